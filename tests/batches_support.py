"""Test helpers for batches: a batch run on one ledger (in memory or on moto's DynamoDB), a stand-in Twilio
that accepts, refuses or answers 429 by recipient, and the queue drained by the batch worker's use case."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from smscredits.adapters.dynamo.batches import DynamoBatchMessages
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.outbox import outbox_items
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.adapters.ledger_operations import LedgerOperations
from smscredits.adapters.memory_batches import InMemoryBatchMessages, InMemoryBatchQueue
from smscredits.adapters.memory_ledger import InMemoryLedger
from smscredits.domain import batches as B
from smscredits.domain import events as E
from smscredits.domain.audit import check_account
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.services import batches
from smscredits.services.ports import BatchMessages, SendOutcome, Statements
from tests.conftest import TABLE, Clock

BASE_URL = "https://api.example.test"
PACING_OFF = batches.Pacing(rate=0, settle_every=30, grace=3600)


def au(i: int) -> str:
    return f"+61412{i:06d}"


def us(i: int) -> str:
    return f"+14152{300000 + i:06d}"


class StandInTwilio:
    """Accepts every message but those to `refuse` (rejected, 21610) and to `busy` (429 once each); those to
    `lost` it accepts but its answer never arrives (a timeout: the worker cannot tell). Keeps each accepted
    message's status callback URL, so a test can deliver any status to it."""

    def __init__(
        self,
        *,
        refuse: frozenset[str] = frozenset(),
        busy: frozenset[str] = frozenset(),
        lost: frozenset[str] = frozenset(),
    ) -> None:
        self.refuse = refuse
        self.busy = set(busy)
        self.lost = lost
        self.sent: list[tuple[str, str, str]] = []  # (to, sid, callback url)
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def send(self, *, to: str, body: str, status_callback: str) -> SendOutcome:
        with self._lock:
            self.calls.append(to)
            if to in self.busy:
                self.busy.discard(to)
                return SendOutcome("rejected", error_code=20429, error_message="Too Many Requests")
            if to in self.refuse:
                return SendOutcome("rejected", error_code=21610, error_message="unsubscribed")
            sid = f"SM{len(self.sent):032d}"
            self.sent.append((to, sid, status_callback))
            if to in self.lost:
                return SendOutcome("unknown", error_message="no answer from the provider")
            return SendOutcome("accepted", sid=sid, status="queued")


def callback_target(url: str) -> tuple[str, str, int]:
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    return query["account_id"], query["batch_id"], int(query["index"])


class Run:
    """A ledger, its message store, the queue, Twilio's stand-in and the events, for one account's batches."""

    def __init__(self, kind: str, clock: Clock, dynamodb: Any = None) -> None:
        self.clock = clock
        self.dynamodb = dynamodb
        self.queue = InMemoryBatchQueue()
        if kind == "memory":
            memory = InMemoryLedger(clock=clock)
            self.ledger: LedgerOperations = memory
            self.statements: Statements = memory
            self.messages: BatchMessages = InMemoryBatchMessages()
        else:
            self.ledger = DynamoLedger(TABLE, client=dynamodb, clock=clock)
            self.statements = DynamoStatements(TABLE, client=dynamodb)
            self.messages = DynamoBatchMessages(TABLE, client=dynamodb)

    def quote(self, account_id: str, entries: list[B.Entry]) -> dict[str, Any]:
        return batches.quote(self.ledger.get_account(account_id), entries, self.ledger.legacy_rates)

    def create(
        self, account_id: str, key: str, entries: list[B.Entry], pacing: batches.Pacing = PACING_OFF
    ) -> dict[str, Any]:
        command = batches.CreateCommand(account_id, IdempotencyKey(key), tuple(entries), BASE_URL)
        return batches.create(self.ledger, self.messages, self.queue, None, command, pacing)

    def drain(
        self,
        twilio: StandInTwilio,
        pacing: batches.Pacing = PACING_OFF,
        *,
        only: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> int:
        """Run queued jobs (and those they queue) until only settle jobs are left, then those once (a settle
        job that leaves its batch open queues itself again: it stays queued). Returns how many ran."""
        ran = 0
        settled = False
        while True:
            jobs = self.queue.take()
            chosen = [job for job in jobs if only is None or only(job)]
            self.queue.send([(job, 0) for job in jobs if job not in chosen])
            if all(job["kind"] == "settle" for job in chosen):
                if settled or not chosen:
                    self.queue.send([(job, 0) for job in chosen])
                    return ran
                settled = True
                self.clock.advance(seconds=pacing.settle_every)  # a settle job's delay
            for job in chosen:
                self.handle(job, twilio, pacing)
                ran += 1

    def handle(
        self, job: Mapping[str, Any], twilio: StandInTwilio, pacing: batches.Pacing = PACING_OFF
    ) -> str:
        return batches.handle(
            job,
            ledger=self.ledger,
            messages=self.messages,
            queue=self.queue,
            sender=twilio,
            base_url=BASE_URL,
            pacing=pacing,
        )

    def deliver(self, twilio: StandInTwilio, status_of: Callable[[str], str]) -> None:
        """A status callback for every accepted message: `status_of(to)`."""
        for to, sid, url in twilio.sent:
            account_id, batch_id, index = callback_target(url)
            batches.apply_callback(
                self.ledger,
                self.messages,
                account_id=account_id,
                batch_id=batch_id,
                index=index,
                status=status_of(to),
                sid=sid,
            )

    def settle(
        self, account_id: str, batch_id: str, pacing: batches.Pacing = PACING_OFF
    ) -> tuple[B.Batch, bool]:
        return batches.settle(self.ledger, self.messages, account_id, batch_id, pacing)

    def completed(self) -> list[dict[str, Any]]:
        """The batch.completed events written so far (the outbox), their details."""
        if isinstance(self.ledger, InMemoryLedger):
            return [detail for kind, detail in self.ledger.outbox() if kind == E.BATCH_COMPLETED]
        return [
            i["detail"] for i in outbox_items(self.dynamodb, TABLE) if i["detail_type"] == E.BATCH_COMPLETED
        ]

    def sound(self, account_id: str) -> Any:
        account, entries, holds = self.statements.partition(account_id)
        assert check_account(account, entries, holds) == []
        return account
