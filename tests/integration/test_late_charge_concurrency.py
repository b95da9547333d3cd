"""Charged statuses for swept messages racing sends, grants and each other on one account, through moto's
server with the DynamoDB fidelity layer (latency, TransactionConflict, partition throughput): each swept
message is charged once, what no pool holds is owed (never a negative pool), and every owed credit is repaid
once from the grants that follow.

Each thread has its own ledger and client, as separate Lambda instances would; a write that gives up under
contention (nothing written) is retried as SQS or the caller would retry it."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from local.moto_dynamo import moto_client
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.domain import ledger as L
from smscredits.domain.audit import check_account
from smscredits.domain.errors import InsufficientCredits
from smscredits.services.settlement import settle_status
from tests.conftest import TABLE, new_account
from tests.ledgers import buy, hold_request, patiently

ACCT = "acct-late"
SWEPT = 10  # swept messages (1 credit each) that Twilio later reports delivered
LEFT = 0  # included credits left when their statuses come: the first charges are owed
STATUS_WORKERS = 4  # each applies every swept message's status: every status is delivered four times
SENDERS, SENDS = 3, 5
GRANTERS, GRANTS, GRANT = 3, 2, 2  # support adjustments of +2 included credits
SIDS = [f"SM{n:032d}" for n in range(SWEPT)]


def together(*runs: Callable[[], None]) -> None:
    failures: list[BaseException] = []

    def guarded(run: Callable[[], None]) -> None:
        try:
            run()
        except BaseException as failure:  # reported by the assertion below
            failures.append(failure)

    threads = [threading.Thread(target=guarded, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.slow
def test_late_charges_racing_sends_and_grants_charge_once_and_repay_what_is_owed_once(
    endpoint: str, dynamo_fidelity: Any
) -> None:
    def ledger() -> DynamoLedger:
        return DynamoLedger(TABLE, client=moto_client(endpoint))

    setup = ledger()
    setup.create_account(new_account(ACCT), reference={})  # 50 included
    for n in range(SWEPT):
        hold, _ = setup.hold(ACCT, hold_request(f"swept-{n}"))
        setup.void(hold, {"provider_status": "no_callback", "result": "swept"})
    setup.adjust(ACCT, L.INCLUDED, LEFT - 50, op_id="spent", actor="support", reason="test: spent elsewhere")
    first = settle_status(
        setup, account_id=ACCT, message_id="swept-0", status="delivered", sid=SIDS[0], error_code=None
    )
    assert first == "charged late" and setup.get_account(ACCT).pools[L.OWED] == 1  # owed before the race

    outcomes: dict[str, list[str]] = defaultdict(list)
    sent: list[int] = []
    lock = threading.Lock()

    def status_worker() -> None:
        mine = ledger()
        order = list(range(SWEPT))
        random.shuffle(order)
        for n in order:
            outcome = patiently(
                partial(
                    settle_status,
                    mine,
                    account_id=ACCT,
                    message_id=f"swept-{n}",
                    status="delivered",
                    sid=SIDS[n],
                    error_code=None,
                )
            )
            with lock:
                outcomes[f"swept-{n}"].append(outcome)

    def sender(worker: int) -> None:
        mine = ledger()
        for n in range(SENDS):
            try:
                hold, _ = patiently(partial(mine.hold, ACCT, hold_request(f"send-{worker}-{n}")))
            except InsufficientCredits:
                continue  # a 402: nothing held
            patiently(partial(mine.post, hold))
            with lock:
                sent.append(hold.credits)

    def granter(worker: int) -> None:
        mine = ledger()
        for n in range(GRANTS):
            op = f"grant-{worker}-{n}"
            patiently(partial(mine.adjust, ACCT, L.INCLUDED, GRANT, op_id=op, actor="support", reason="test"))

    together(
        *(status_worker for _ in range(STATUS_WORKERS)),
        *(partial(sender, w) for w in range(SENDERS)),
        *(partial(granter, w) for w in range(GRANTERS)),
    )

    statements = DynamoStatements(TABLE, client=moto_client(endpoint))
    account, entries, holds = statements.partition(ACCT)
    assert check_account(account, entries, holds) == []  # no pool negative, entries and pools agree
    assert account.held == 0
    # Every delivery of a status answers (a repeat that met the charge answers it, or `unchanged`); the entries
    # show it charged once.
    assert all(len(outcomes[f"swept-{n}"]) == STATUS_WORKERS for n in range(SWEPT))
    assert {outcome for each in outcomes.values() for outcome in each} <= {"charged late", "unchanged"}
    charged: dict[str, int] = defaultdict(int)
    for entry in entries:
        if entry.kind == "late_charge":
            charged[entry.reference["message_id"]] += entry.amount if entry.pool == L.OWED else -entry.amount
    assert charged == {f"swept-{n}": 1 for n in range(SWEPT)}
    swept = [hold for hold in holds if hold.message_id.startswith("swept-")]
    assert len(swept) == SWEPT and all(h.status == "posted" and h.provider["late_charge"] for h in swept)
    granted = GRANTERS * GRANTS * GRANT
    owed = account.pools.get(L.OWED, 0)
    spendable = sum(credits for pool, credits in account.pools.items() if pool != L.OWED)
    assert spendable - owed == LEFT + granted - SWEPT - sum(sent)
    assert owed == 0 or spendable == 0  # credits are never kept while some are owed

    patiently(
        partial(buy, ledger(), ACCT, order_id="cs_after", payment_intent="pi_after")
    )  # the next grant repays
    account, entries, holds = statements.partition(ACCT)
    assert check_account(account, entries, holds) == []
    assert account.pools.get(L.OWED, 0) == 0
    owed_total = sum(e.amount for e in entries if e.kind == "late_charge" and e.pool == L.OWED)
    repaid = sum(-e.amount for e in entries if e.kind == "repayment" and e.pool == L.OWED)
    assert owed_total > 0 and repaid == owed_total  # every owed credit repaid, once
    assert sum(account.pools.values()) == LEFT + granted + 100 - SWEPT - sum(sent)
