"""32 processes' worth of ledgers hammering one account through moto's HTTP server.

Each thread has its own DynamoLedger (its own cached balance, so most of its writes start stale) and its
own boto3 client, as separate Lambda instances would. The server is moto's, run in this process with
local.moto_dynamo.patch_moto() applied: that patch gives moto what real DynamoDB gives for free, one lock
per request (moto's server has none) and an item-level rollback of a cancelled transaction (moto's own
restores a copy of the whole table, silently undoing writes other requests committed meanwhile). The lock
only makes each request atomic, as DynamoDB's are; it does not serialise our read-modify-write cycles.
The `dynamo_fidelity` fixture adds what DynamoDB does besides (local.dynamo_fidelity): request latency,
TransactionConflict cancellations while another transaction holds the balance, partition throughput.
What keeps the ledger exact is the store's own condition: every balance write is pinned to
`version = :v`, so of N writers that planned from the same balance exactly one lands and the others get
the current balance back (ALL_OLD) and plan again.

The tests print how many TransactWriteItems attempts each phase took per successful movement.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from botocore.config import Config

from local.moto_dynamo import moto_client
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold
from smscredits.domain.account_settings import AccountPatch
from smscredits.domain.audit import check_account
from smscredits.domain.errors import InsufficientCredits
from smscredits.domain.movements import HoldRequest
from smscredits.domain.orders import Paid
from tests.conftest import TABLE, new_account
from tests.ledgers import pack_order

THREADS = 32
AU = "purchased:AU"


class Calls:
    """Counts requests per operation across every client (botocore before-call hook)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def hook(self, model: Any, **_: Any) -> None:
        with self.lock:
            self.counts[model.name] += 1

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)


def client_for(url: str, calls: Calls | None = None) -> Any:
    # No SDK retries: every retry is the store's, and counted.
    config = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60, max_pool_connections=2)
    client = moto_client(url, config)
    if calls is not None:
        client.meta.events.register("before-call.dynamodb.*", calls.hook)
    return client


def run_threads(work: Callable[[int], Any]) -> list[Any]:
    """Run work(i) on THREADS threads that start together; re-raise the first failure."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS
    errors: list[BaseException] = []

    def main(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = work(index)
        except BaseException as error:  # surfaced below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=main, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if errors:
        raise errors[0]
    return results


def sound(reader: DynamoStatements, account_id: str) -> tuple[Account, list[Any], list[Hold]]:
    account, entries, holds = reader.partition(account_id)
    assert check_account(account, entries, holds) == []
    assert all(value >= 0 for value in account.pools.values())
    return account, entries, holds


def report(phase: str, before: Counter[str], after: Counter[str], successes: int) -> None:
    attempts = after["TransactWriteItems"] - before["TransactWriteItems"]
    reads = after["GetItem"] - before["GetItem"]
    print(
        f"\n[{phase}] {THREADS} threads: {attempts} TransactWriteItems for {successes} movements "
        f"({attempts / max(successes, 1):.1f} per movement), {reads} GetItem"
    )


def draft(message_id: str, segments: int) -> HoldRequest:
    return HoldRequest(
        message_id, segments, "AU", f"hash-{message_id}", {"region": "AU", "segments": segments}
    )


@pytest.mark.slow
def test_concurrent_reserves_never_overspend_then_post_and_void(endpoint, dynamo_fidelity):
    calls = Calls()
    setup = DynamoLedger(TABLE, client=client_for(endpoint))
    setup.create_account(new_account("acct-race"), reference={})
    setup.adjust("acct-race", AU, 150, op_id="fund:race", actor="test", reason="credits to race for")
    reader = DynamoStatements(TABLE, client=client_for(endpoint))
    stores = [
        DynamoLedger(TABLE, client=client_for(endpoint, calls), max_attempts=200) for _ in range(THREADS)
    ]

    # ---- phase 1: everyone reserves until the account is empty --------------------------------------
    def reserve_until_empty(index: int) -> list[Hold]:
        rng = random.Random(index)
        holds: list[Hold] = []
        segments = rng.randint(1, 3)
        while True:
            try:
                hold, created = stores[index].hold("acct-race", draft(f"t{index}-{len(holds)}", segments))
            except InsufficientCredits:
                if segments == 1:
                    return holds  # even one credit is refused, on a balance read just now: empty
                segments = 1
                continue
            assert created
            holds.append(hold)
            segments = rng.randint(1, 3)

    before = calls.snapshot()
    per_thread = run_threads(reserve_until_empty)
    holds = [hold for thread_holds in per_thread for hold in thread_holds]
    report("reserve", before, calls.snapshot(), len(holds))

    assert sum(hold.credits for hold in holds) == 200  # every credit held, none twice
    assert len({hold.message_id for hold in holds}) == len(holds)
    funded: Counter[str] = Counter()
    for hold in holds:
        assert sum(f.credits for f in hold.funding) == hold.credits
        for f in hold.funding:
            funded[f.pool] += f.credits
    assert funded == {L.INCLUDED: 50, AU: 150}
    account, _, stored_holds = sound(reader, "acct-race")
    assert {pool: value for pool, value in account.pools.items() if value} == {}
    assert account.held == 200
    assert sorted(h.message_id for h in stored_holds) == sorted(h.message_id for h in holds)
    assert all(h.status == "pending" for h in stored_holds)

    # ---- phase 2: half posted, half voided, all at once ---------------------------------------------
    to_void = {hold.message_id for n, hold in enumerate(holds) if n % 2}
    returned: defaultdict[str, int] = defaultdict(int)
    for hold in holds:
        if hold.message_id in to_void:
            for f in hold.funding:
                returned[f.pool] += f.credits

    def settle(index: int) -> int:
        done = 0
        for hold in holds[index::THREADS]:
            ended = (stores[index].void if hold.message_id in to_void else stores[index].post)(hold)
            assert ended.status == ("voided" if hold.message_id in to_void else "posted")
            done += 1
        return done

    before = calls.snapshot()
    settled = sum(run_threads(settle))
    report("post/void", before, calls.snapshot(), settled)

    account, entries, stored_holds = sound(reader, "acct-race")
    assert account.held == 0
    assert {pool: value for pool, value in account.pools.items() if value} == dict(returned)
    assert {h.message_id: h.status for h in stored_holds} == {
        h.message_id: "voided" if h.message_id in to_void else "posted" for h in holds
    }
    assert sum(e.amount for e in entries if e.kind == "void") == sum(returned.values())
    assert all(e.amount == 0 for e in entries if e.kind == "post")


def test_concurrent_grants_with_one_op_id_grant_once(endpoint, dynamo_fidelity):
    calls = Calls()
    setup = DynamoLedger(TABLE, client=client_for(endpoint))
    setup.create_account(new_account("acct-grant"), reference={})
    order = setup.open_order(pack_order("acct-grant", order_id="cs_once"))
    reader = DynamoStatements(TABLE, client=client_for(endpoint))
    stores = [
        DynamoLedger(TABLE, client=client_for(endpoint, calls), max_attempts=200) for _ in range(THREADS)
    ]

    def grant(index: int) -> bool:
        return stores[index].grant_purchase(Paid(order, "pi_once"), source="race")

    before = calls.snapshot()
    applied = run_threads(grant)
    report("same-op grant", before, calls.snapshot(), THREADS)

    assert applied.count(True) == 1
    account, entries, _ = sound(reader, "acct-grant")
    assert {pool: value for pool, value in account.pools.items() if value} == {L.INCLUDED: 50, AU: 100}
    assert [e.amount for e in entries if e.op_id == "purchase:cs_once"] == [100]


@pytest.mark.slow
def test_support_changes_race_sends_without_losing_a_credit_and_one_key_applies_once(
    endpoint, dynamo_fidelity
):
    """Half the threads retry one PATCH (one Idempotency-Key), half hold a credit each: every hold lands, the
    PATCH applies once and every retry answers its first answer, and the pools still match the entries."""
    setup = DynamoLedger(TABLE, client=client_for(endpoint))
    setup.create_account(new_account("acct-patch"), reference={})
    reader = DynamoStatements(TABLE, client=client_for(endpoint))
    stores = [DynamoLedger(TABLE, client=client_for(endpoint), max_attempts=200) for _ in range(THREADS)]
    patch = AccountPatch(
        low_balance_threshold=5, billing_anchor=date(2026, 1, 20), stripe_customer_id="cus_Race1"
    )

    def work(index: int) -> Any:
        if index % 2:
            return stores[index].update_account("acct-patch", patch, actor="support", op_id="settings:race")[
                1
            ]
        return stores[index].hold("acct-patch", draft(f"m{index}", 1))

    results = run_threads(work)
    answers = [dict(result) for index, result in enumerate(results) if index % 2]
    assert all(answer == answers[0] for answer in answers)
    account, entries, holds = sound(reader, "acct-patch")
    assert (account.low_balance_threshold, account.auto_recharge.customer_id) == (5, "cus_Race1")
    assert account.billing_anchor == date(2026, 1, 20)
    assert len(holds) == THREADS // 2 and account.held == THREADS // 2
    assert account.pools[L.INCLUDED] == 50 - THREADS // 2
    assert answers[0]["next_refresh_at"] == account.next_refresh_at.isoformat().replace("+00:00", ".000Z")
    assert [e.kind for e in entries].count("grant") == 1
