"""The Ledger port on DynamoDB: the operations of adapters/ledger_operations.py over the commit engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from smscredits.adapters.dynamo import codec as C
from smscredits.adapters.dynamo.commit import CommitEngine
from smscredits.adapters.ledger_operations import LedgerOperations
from smscredits.domain import batches as B
from smscredits.domain.account import Account, Hold
from smscredits.domain.catalog import DEFAULT_LEGACY_CREDITS_PER_MESSAGE
from smscredits.domain.changes import Change, Committed, Guard, Record, Refused
from smscredits.domain.events import alerting
from smscredits.domain.orders import Order, Payment
from smscredits.settings import DEFAULT_MESSAGE_RETENTION_SECONDS, DEFAULT_SWEEP_GRACE_SECONDS

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Clock


def utc_now() -> datetime:
    return datetime.now(UTC)


class DynamoLedger(LedgerOperations):
    """Atomic, idempotent credit movements on one table."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        clock: Clock = utc_now,
        legacy_rates: Mapping[str, int] = DEFAULT_LEGACY_CREDITS_PER_MESSAGE,
        sweep_grace_seconds: int = DEFAULT_SWEEP_GRACE_SECONDS,
        message_retention_seconds: int = DEFAULT_MESSAGE_RETENTION_SECONDS,
        max_attempts: int = 8,
        cache_size: int = 10_000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            clock=clock,
            legacy_rates=legacy_rates,
            sweep_grace_seconds=sweep_grace_seconds,
            message_retention_seconds=message_retention_seconds,
        )
        self.engine = CommitEngine(
            table_name,
            client=client,
            clock=clock,
            max_attempts=max_attempts,
            cache_size=cache_size,
            sleep=sleep,
        )

    def get_account(self, account_id: str) -> Account:
        return self.engine.read_account(account_id)

    def known_account(self, account_id: str) -> Account:
        return self.engine.known(account_id) or self.engine.read_account(account_id)

    def find_hold(self, account_id: str, message_id: str) -> Hold | None:
        raw = self.engine.read(C.hold_key(account_id, message_id))
        return C.hold_from_item(raw) if raw else None

    def get_order(self, order_id: str) -> Order | None:
        raw = self.engine.read(C.order_key(order_id))
        return C.order_from_item(raw) if raw else None

    def get_payment(self, payment_intent: str) -> Payment | None:
        raw = self.engine.read(C.payment_key(payment_intent))
        return C.payment_from_item(raw) if raw else None

    def find_operation(self, account_id: str, op_id: str) -> Guard | None:
        raw = self.engine.read(C.guard_key(account_id, op_id))
        return C.guard_from_item(raw) if raw else None

    def find_batch(self, account_id: str, batch_id: str) -> B.Batch | None:
        raw = self.engine.read(C.hold_key(account_id, batch_id))
        if not raw or "batch_state" not in raw:
            return None
        from smscredits.adapters.dynamo.batches import batch_from_item  # only batch paths load it

        return batch_from_item(raw)

    def _commit(self, account_id: str, build: Callable[[Account], Change]) -> Committed | Refused:
        return self.engine.commit(account_id, alerting(build))

    def _create(self, account: Account, change: Change) -> None:
        self.engine.create(account, change)

    def _write(self, record: Record) -> Refused | None:
        return self.engine.write(record)
