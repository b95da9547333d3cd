"""Two batches and a stream of single sends on one account at once, through moto's server with the DynamoDB
fidelity layer (latency, TransactionConflict, partition throughput): every credit lands exactly once.

Each thread has its own ledger and client, as separate Lambda instances would. A write that gives up under
contention (UpstreamUnavailable: nothing written) is retried as its caller would retry it: the send by its
client with the same key, a batch job by SQS. Settlements run from several workers at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from local.moto_dynamo import moto_client
from smscredits.adapters.dynamo.batches import DynamoBatchMessages
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.adapters.memory_batches import InMemoryBatchQueue
from smscredits.domain import batches as B
from smscredits.domain.audit import check_account
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.domain.orders import Paid
from smscredits.services import batches
from tests.batches_support import BASE_URL, PACING_OFF, StandInTwilio, au, callback_target
from tests.conftest import TABLE, new_account
from tests.ledgers import hold_request, pack_order, patiently

ACCT = "acct-race"
PER_BATCH = 40


class Race:
    """The shared queue, Twilio's stand-in, what single sends charged, and each thread's failures."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.queue = InMemoryBatchQueue()
        self.twilio = StandInTwilio()
        self.singles: list[int] = []
        self.failures: list[BaseException] = []

    def ledger(self) -> DynamoLedger:
        return DynamoLedger(TABLE, client=moto_client(self.endpoint))

    def messages(self) -> DynamoBatchMessages:
        return DynamoBatchMessages(TABLE, client=moto_client(self.endpoint))

    def together(self, *runs: tuple[Callable[..., None], Any]) -> None:
        def guarded(target: Callable[..., None], argument: Any) -> threading.Thread:
            def run() -> None:
                try:
                    target(argument)
                except BaseException as failure:  # reported by the assertion below
                    self.failures.append(failure)

            return threading.Thread(target=run)

        threads = [guarded(target, argument) for target, argument in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert self.failures == []

    def single_sends(self, worker: int) -> None:
        ledger = self.ledger()
        for n in range(6):
            request = hold_request(f"msg-{worker}-{n}")
            hold, _ = patiently(partial(ledger.hold, ACCT, request))
            patiently(partial(ledger.post, hold))
            self.singles.append(hold.credits)

    def create(self, key: str) -> None:
        offset = 0 if key == "batch-a" else 1000
        entries = tuple(B.Entry(au(offset + i), "hello") for i in range(PER_BATCH))
        command = batches.CreateCommand(ACCT, IdempotencyKey(key), entries, BASE_URL)
        ledger, messages = self.ledger(), self.messages()
        patiently(lambda: batches.create(ledger, messages, self.queue, None, command, PACING_OFF))

    def worker(self, _: Any) -> None:
        ledger, messages = self.ledger(), self.messages()
        while jobs := self.queue.take(1):
            (job,) = jobs
            if job["kind"] != "settle":  # settlements are raced by the callbacks below
                patiently(partial(self.handle, job, ledger, messages))

    def handle(self, job: dict[str, Any], ledger: DynamoLedger, messages: DynamoBatchMessages) -> str:
        return batches.handle(
            job,
            ledger=ledger,
            messages=messages,
            queue=self.queue,
            sender=self.twilio,
            base_url=BASE_URL,
            pacing=PACING_OFF,
        )

    def callbacks_and_settlements(self, part: int) -> None:
        ledger, messages = self.ledger(), self.messages()
        for to, sid, url in self.twilio.sent[part::4]:
            account_id, batch_id, index = callback_target(url)
            status = "failed" if failed(to) else "delivered"
            batches.apply_callback(
                ledger,
                messages,
                account_id=account_id,
                batch_id=batch_id,
                index=index,
                status=status,
                sid=sid,
            )
            if index % 10 == 0:
                patiently(partial(batches.settle, ledger, messages, ACCT, batch_id, PACING_OFF))


def failed(to: str) -> bool:
    return int(to[-3:]) % 5 == 0


@pytest.mark.slow
def test_batches_racing_single_sends_and_each_other_stay_exact(endpoint: str, dynamo_fidelity: Any) -> None:
    race = Race(endpoint)
    setup = race.ledger()
    setup.create_account(new_account(ACCT), reference={})
    order = setup.open_order(pack_order(ACCT, region="AU", packs=5, order_id="cs_race"))
    setup.grant_purchase(Paid(order, "pi_race"), source="test")
    total = sum(setup.get_account(ACCT).pools.values())

    race.together(
        *((race.single_sends, w) for w in range(6)), (race.create, "batch-a"), (race.create, "batch-b")
    )
    race.together(*((race.worker, None) for _ in range(3)), *((race.single_sends, w) for w in range(6, 9)))
    assert len(race.twilio.sent) == 2 * PER_BATCH  # every batch message sent once
    race.together(*((race.callbacks_and_settlements, part) for part in range(4)))

    final, messages = race.ledger(), race.messages()
    posted = 0
    for key in ("batch-a", "batch-b"):
        batch_id = B.batch_id_for(ACCT, key)
        batch, _ = patiently(partial(batches.settle, final, messages, ACCT, batch_id, PACING_OFF))
        assert batch.status == "completed"
        assert batch.returned == sum(1 for to, _, url in race.twilio.sent if batch_id in url and failed(to))
        assert batch.posted + batch.returned == PER_BATCH
        posted += batch.posted
    account, entries, holds = DynamoStatements(TABLE, client=moto_client(endpoint)).partition(ACCT)
    assert check_account(account, entries, holds) == []
    assert account.held == 0
    assert sum(account.pools.values()) == total - posted - sum(race.singles)


def test_a_charged_status_for_a_swept_message_delivered_concurrently_is_charged_once(
    endpoint: str, dynamo_fidelity: Any
) -> None:
    """Twilio took two messages whose answers were lost (swept as returned at the grace period); each one's
    `delivered` then comes six times at once, from separate workers: each is charged late exactly once."""
    account_id = "acct-batch-late"
    race = Race(endpoint)
    race.twilio = StandInTwilio(lost=frozenset({au(3), au(7)}))
    setup = race.ledger()
    setup.create_account(new_account(account_id), reference={})
    total = sum(setup.get_account(account_id).pools.values())
    entries = tuple(B.Entry(au(i), "hello") for i in range(10))
    command = batches.CreateCommand(account_id, IdempotencyKey("late"), entries, BASE_URL)
    created = batches.create(setup, race.messages(), race.queue, None, command, PACING_OFF)
    batch_id, each = created["batch_id"], created["credits_held"] // 10
    race.worker(None)
    lost = [(sid, url) for to, sid, url in race.twilio.sent if to in race.twilio.lost]
    for to, sid, url in race.twilio.sent:
        if to not in race.twilio.lost:
            batches.apply_callback(
                setup,
                race.messages(),
                account_id=account_id,
                batch_id=batch_id,
                index=callback_target(url)[2],
                status="delivered",
                sid=sid,
            )
    grace = batches.Pacing(rate=0, settle_every=30, grace=0)  # the grace period is over
    batch, ended = batches.settle(setup, race.messages(), account_id, batch_id, grace)
    assert ended and batch.returned == 2 * each

    def deliver(n: int) -> None:
        sid, url = lost[n % 2]
        ledger, messages = race.ledger(), race.messages()
        patiently(
            lambda: batches.apply_callback(
                ledger,
                messages,
                account_id=account_id,
                batch_id=batch_id,
                index=callback_target(url)[2],
                status="delivered",
                sid=sid,
            )
        )

    race.together(*((deliver, n) for n in range(12)))
    batch = setup.get_batch(account_id, batch_id)
    assert (batch.status, batch.late_charged) == ("completed", 2 * each)
    account, entries_, holds = DynamoStatements(TABLE, client=moto_client(endpoint)).partition(account_id)
    assert check_account(account, entries_, holds) == []
    assert account.held == 0
    assert sum(account.pools.values()) == total - 10 * each
    assert sum(e.amount for e in entries_ if e.kind == "late_charge") == -2 * each
