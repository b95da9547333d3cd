"""The Ledger and Statements ports in memory: the same operations and the same checks as on DynamoDB (every
record's precondition, the balance pinned to its version, all or nothing), under one lock. For fast
use-case tests and for the contract tests that hold both ledgers to the same rules."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from smscredits.adapters.ledger_operations import LedgerOperations
from smscredits.domain import batches as B
from smscredits.domain.account import Account, Hold, LedgerRecord
from smscredits.domain.account_settings import list_cursor, listed_after
from smscredits.domain.catalog import DEFAULT_LEGACY_CREDITS_PER_MESSAGE
from smscredits.domain.changes import (
    BatchCancel,
    BatchDispatch,
    BatchSettlement,
    Change,
    Committed,
    DeliveryStatus,
    Dispatch,
    Guard,
    HoldTransition,
    NewBatch,
    NewHold,
    NewOrder,
    NewPayment,
    NewUnmatched,
    OrderNote,
    OrderPaid,
    OrderSession,
    PaymentRefunds,
    Record,
    Refused,
)
from smscredits.domain.errors import AccountExists, InvalidRequest, NotFound
from smscredits.domain.events import alerting, detail_of
from smscredits.domain.ledger import STATEMENT_MAX_SCANNED
from smscredits.domain.orders import Order, Payment, UnmatchedPayment
from smscredits.domain.periods import iso
from smscredits.settings import DEFAULT_MESSAGE_RETENTION_SECONDS, DEFAULT_SWEEP_GRACE_SECONDS

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Clock


def utc_now() -> datetime:
    return datetime.now(UTC)


class InMemoryLedger(LedgerOperations):
    def __init__(
        self,
        *,
        clock: Clock = utc_now,
        legacy_rates: Mapping[str, int] = DEFAULT_LEGACY_CREDITS_PER_MESSAGE,
        sweep_grace_seconds: int = DEFAULT_SWEEP_GRACE_SECONDS,
        message_retention_seconds: int = DEFAULT_MESSAGE_RETENTION_SECONDS,
        max_scanned: int = STATEMENT_MAX_SCANNED,
    ) -> None:
        super().__init__(
            clock=clock,
            legacy_rates=legacy_rates,
            sweep_grace_seconds=sweep_grace_seconds,
            message_retention_seconds=message_retention_seconds,
        )
        self.max_scanned = max_scanned
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._entries: dict[str, list[LedgerRecord]] = {}
        self._holds: dict[tuple[str, str], Hold] = {}
        self._sweep_after: dict[tuple[str, str], datetime] = {}
        self._operations: dict[tuple[str, str], Guard] = {}
        self._orders: dict[str, Order] = {}
        self._payments: dict[str, Payment] = {}
        self._unmatched: dict[str, UnmatchedPayment] = {}
        self._outbox: list[tuple[str, dict[str, Any]]] = []
        self._batches: dict[tuple[str, str], B.Batch] = {}

    # -- reads ------------------------------------------------------------------------------------------

    def get_account(self, account_id: str) -> Account:
        with self._lock:
            return self._account(account_id)

    def known_account(self, account_id: str) -> Account:
        return self.get_account(account_id)

    def _account(self, account_id: str) -> Account:
        account = self._accounts.get(account_id)
        if account is None:
            raise NotFound(f"Account {account_id} does not exist.", {"account_id": account_id})
        return account

    def find_hold(self, account_id: str, message_id: str) -> Hold | None:
        with self._lock:
            return self._holds.get((account_id, message_id))

    def get_order(self, order_id: str) -> Order | None:
        with self._lock:
            return self._orders.get(order_id)

    def get_payment(self, payment_intent: str) -> Payment | None:
        with self._lock:
            return self._payments.get(payment_intent)

    def find_operation(self, account_id: str, op_id: str) -> Guard | None:
        with self._lock:
            return self._operations.get((account_id, op_id))

    def find_batch(self, account_id: str, batch_id: str) -> B.Batch | None:
        with self._lock:
            return self._batches.get((account_id, batch_id))

    def snapshot(self) -> dict[str, Any]:
        """Every stored record: what a test compares to prove that a refusal wrote nothing. Records are
        immutable and replaced, never changed in place, so copying the collections is enough."""
        with self._lock:
            return {
                "accounts": dict(self._accounts),
                "entries": {account_id: list(entries) for account_id, entries in self._entries.items()},
                "holds": dict(self._holds),
                "sweep": dict(self._sweep_after),
                "operations": dict(self._operations),
                "orders": dict(self._orders),
                "payments": dict(self._payments),
                "unmatched": dict(self._unmatched),
                "outbox": list(self._outbox),
                "batches": dict(self._batches),
            }

    def outbox(self) -> list[tuple[str, dict[str, Any]]]:
        """The events written with the movements, oldest first: (detail type, detail)."""
        with self._lock:
            return list(self._outbox)

    # -- writes -----------------------------------------------------------------------------------------

    def _create(self, account: Account, change: Change) -> None:
        with self._lock:
            if account.account_id in self._accounts:
                raise AccountExists(
                    f"Account {account.account_id} already exists.", {"account_id": account.account_id}
                )
            self._accounts[account.account_id] = account
            self._entries[account.account_id] = []
            self._add_entries(account, change)

    def _commit(self, account_id: str, build: Callable[[Account], Change]) -> Committed | Refused:
        with self._lock:
            state = self._account(account_id)
            change = alerting(build)(state)  # under the lock: the state it is pinned to is the current one
            for record in change.records:
                passed, found = self._check(account_id, record)
                if not passed:
                    return Refused(state, record, found)
            for record in change.records:
                self._store(account_id, record)
            after = state._replace(
                pools=dict(change.movement.pools),
                held=change.movement.held,
                version=state.version + 1,
                **change.account,
            )
            self._accounts[account_id] = after
            self._add_entries(after, change)
            occurred_at = iso(self.clock())
            self._outbox.extend(
                (event.detail_type, detail_of(account_id, change.op_id, index, event, occurred_at))
                for index, event in enumerate(change.events)
            )
            return Committed(after, change)

    def _write(self, record: Record) -> Refused | None:
        with self._lock:
            account_id = getattr(record, "account_id", "")
            passed, found = self._check(account_id, record)
            if not passed:
                return Refused(None, record, found)
            self._store(account_id, record)
            return None

    def _add_entries(self, account: Account, change: Change) -> None:
        now = self.clock()
        self._entries[account.account_id].extend(
            LedgerRecord(
                entry_id=f"{account.account_id}:{account.version}:{index}",
                account_id=account.account_id,
                kind=entry.kind,
                pool=entry.pool,
                amount=entry.amount,
                balance_after=entry.balance_after,
                created_at=now,
                op_id=change.op_id,
                reference=dict(change.reference),
            )
            for index, entry in enumerate(change.movement.entries)
        )

    def _check(self, account_id: str, record: Record) -> tuple[bool, Any]:
        """Whether the record's precondition holds, and the record as it is now."""
        match record:
            case Guard():
                found: Any = self._operations.get((account_id, record.op_id))
                return found is None, found
            case NewHold(hold, _):
                found = self._holds.get((hold.account_id, hold.message_id))
                if hold.tries == 1:
                    return found is None, found
                retryable = found is not None and found.status == "voided" and found.provider.get("retryable")
                return bool(retryable) and found.tries == hold.tries - 1, found
            case Dispatch():
                found = self._holds.get((record.account_id, record.message_id))
                return found is not None and found.status == "pending" and not found.dispatching, found
            case HoldTransition() | DeliveryStatus():
                found = self._holds.get((record.account_id, record.message_id))
                return found is not None and _hold_allows(found, record), found
            case NewOrder() | OrderSession() | OrderPaid() | NewPayment() | OrderNote() | PaymentRefunds():
                return self._check_payment(record)
            case NewUnmatched(unmatched):
                found = self._unmatched.get(unmatched.object_id)
                return found is None, found
            case NewBatch() | BatchSettlement() | BatchCancel() | BatchDispatch():
                return self._check_batch(record)
        raise TypeError(f"no in-memory write for {type(record).__name__}")

    def _check_payment(
        self, record: NewOrder | OrderSession | OrderPaid | NewPayment | OrderNote | PaymentRefunds
    ) -> tuple[bool, Any]:
        """_check for an order's and a payment's records."""
        found: Any
        match record:
            case NewOrder(order):
                found = self._orders.get(order.order_id)
                return found is None, found
            case OrderSession():
                found = self._orders.get(record.order_id)
                return found is not None and found.session_id in (None, record.session_id), found
            case OrderPaid():
                found = self._orders.get(record.order_id)
                return found is not None and _order_allows(found, record), found
            case NewPayment(payment):
                found = self._payments.get(payment.payment_intent)
                return found is None, found
            case OrderNote():
                found = self._orders.get(record.order_id)
                return found is not None and _note_allowed(found, record), found
            case PaymentRefunds():
                found = self._payments.get(record.payment_intent)
                return found is not None and found.refunds == record.before, found
        raise TypeError(f"no in-memory write for {type(record).__name__}")

    def _store(self, account_id: str, record: Record) -> None:
        if isinstance(record, NewBatch | BatchSettlement | BatchCancel | BatchDispatch):
            self._apply_batch(record)
        else:
            self._apply(account_id, record)

    def _apply(self, account_id: str, record: Record) -> None:
        match record:
            case Guard():
                self._operations[(account_id, record.op_id)] = record
            case NewHold(hold, sweep_after):
                self._holds[(hold.account_id, hold.message_id)] = hold
                self._sweep_after[(hold.account_id, hold.message_id)] = sweep_after
            case HoldTransition() | Dispatch() | DeliveryStatus():
                self._change_hold(record)
            case NewOrder() | OrderSession() | OrderPaid() | OrderNote():
                self._apply_order(record)
            case NewPayment(payment):
                self._payments[payment.payment_intent] = payment
            case PaymentRefunds():
                payment = self._payments[record.payment_intent]
                self._payments[record.payment_intent] = payment._replace(
                    refunds=record.after, taken_credits=payment.taken_credits + record.taken
                )
            case NewUnmatched(unmatched):
                self._unmatched[unmatched.object_id] = unmatched

    def _apply_order(self, record: NewOrder | OrderSession | OrderPaid | OrderNote) -> None:
        match record:
            case NewOrder(order):
                self._orders[order.order_id] = order
            case OrderSession():
                self._orders[record.order_id] = self._orders[record.order_id]._replace(
                    session_id=record.session_id,
                    checkout_url=record.url,
                    status="open",
                )
            case OrderPaid():
                order = self._orders[record.order_id]
                self._orders[record.order_id] = order._replace(
                    status="paid",
                    paid_at=order.paid_at or record.paid_at,
                    payment_intent=record.payment_intent or order.payment_intent,
                )
            case OrderNote():
                self._orders[record.order_id] = _noted(self._orders[record.order_id], record)

    def _check_batch(
        self, record: NewBatch | BatchSettlement | BatchCancel | BatchDispatch
    ) -> tuple[bool, Any]:
        match record:
            case NewBatch(batch):
                held = self._holds.get((batch.account_id, batch.batch_id))
                return held is None, held
            case BatchSettlement(before, _):
                found = self._batches.get((before.account_id, before.batch_id))
                return found is not None and found.settlements == before.settlements, found
            case BatchCancel():
                found = self._batches.get((record.account_id, record.batch_id))
                return found is not None and found.status == "open" and not found.cancel_requested, found
        found = self._batches.get((record.account_id, record.batch_id))
        return found is not None and not found.dispatch_started, found

    def _apply_batch(self, record: NewBatch | BatchSettlement | BatchCancel | BatchDispatch) -> None:
        match record:
            case NewBatch(batch) | BatchSettlement(_, batch):
                self._batches[(batch.account_id, batch.batch_id)] = batch
                self._holds[(batch.account_id, batch.batch_id)] = B.open_hold(batch)
            case BatchCancel():
                key = (record.account_id, record.batch_id)
                self._batches[key] = self._batches[key]._replace(cancel_requested=True)
            case BatchDispatch():
                key = (record.account_id, record.batch_id)
                self._batches[key] = self._batches[key]._replace(dispatch_started=True)

    def _change_hold(self, record: HoldTransition | Dispatch | DeliveryStatus) -> None:
        key = (record.account_id, record.message_id)
        hold = self._holds[key]
        match record:
            case HoldTransition():
                hold = hold._replace(status=record.status, provider=dict(record.provider))
                if record.ended_at is not None:
                    hold = hold._replace(ended_at=record.ended_at)
                    self._sweep_after.pop(key, None)
            case Dispatch():
                hold = hold._replace(dispatching=record.attempt_id)
            case DeliveryStatus():
                hold = hold._replace(
                    provider={**hold.provider, "provider_status": record.status, "sid": record.sid}
                )
        self._holds[key] = hold

    # -- the Statements port ----------------------------------------------------------------------------

    def statement(
        self,
        account_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        kinds: tuple[str, ...] = (),
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[list[LedgerRecord], str | None]:
        """Ledger entries newest first (by time, then place in the ledger), at most `limit`, reading at most
        `max_scanned` entries of the time range (as on DynamoDB: a page may come back short with a cursor)."""
        with self._lock:
            entries = sorted(self._entries.get(account_id, []), key=_time_key, reverse=True)
        if cursor is not None:
            after = _cursor_key(cursor, account_id)
            entries = [entry for entry in entries if _time_key(entry) < after]
        in_range = [
            entry
            for entry in entries
            if (start is None or entry.created_at >= start) and (end is None or entry.created_at < end)
        ]
        page: list[LedgerRecord] = []
        for entry in in_range[: self.max_scanned]:
            if kinds and entry.kind not in kinds:
                continue
            page.append(entry)
            if len(page) == limit:
                return page, _cursor(account_id, entry)
        if len(in_range) > self.max_scanned:
            return page, _cursor(account_id, in_range[self.max_scanned - 1])
        return page, None

    def require_account(self, account_id: str) -> None:
        self.get_account(account_id)

    def list_accounts(self, *, limit: int, cursor: str | None = None) -> tuple[list[Account], str | None]:
        """Accounts by id; a full page has a cursor (the next page may be empty), as DynamoDB's Query."""
        after = listed_after(cursor) if cursor is not None else None
        with self._lock:
            ids = sorted(account_id for account_id in self._accounts if after is None or account_id > after)
            page = [self._accounts[account_id] for account_id in ids[:limit]]
        return page, list_cursor(page[-1].account_id) if len(page) == limit else None

    def partition(self, account_id: str) -> tuple[Account, list[LedgerRecord], list[Hold]]:
        with self._lock:
            account = self._account(account_id)
            holds = [hold for (owner, _), hold in self._holds.items() if owner == account_id]
            return account, list(self._entries[account_id]), holds

    def account_ids(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._accounts))

    def due_accounts(self, now: datetime) -> Iterator[str]:
        with self._lock:
            return iter(
                [account.account_id for account in self._accounts.values() if account.next_refresh_at <= now]
            )

    def stale_holds(self, now: datetime) -> Iterator[tuple[str, str]]:
        with self._lock:
            return iter([key for key, after in self._sweep_after.items() if after <= now])


def _time_key(entry: LedgerRecord) -> tuple[str, int, int]:
    """LedgerByTime's order: the time, then the place in the ledger (the entry id's version and index)."""
    _, version, index = entry.entry_id.rsplit(":", 2)
    return iso(entry.created_at), int(version), int(index)


def _cursor(account_id: str, entry: LedgerRecord) -> str:
    at, version, index = _time_key(entry)
    return base64.urlsafe_b64encode(json.dumps([account_id, at, version, index]).encode()).decode()


def _cursor_key(cursor: str, account_id: str) -> tuple[str, int, int]:
    try:
        owner, at, version, index = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if owner != account_id:
            raise ValueError("cursor of another account")
        return str(at), int(version), int(index)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("The cursor is not one this API returned.", {"cursor": "invalid"}) from exc


def _hold_allows(hold: Hold, record: HoldTransition | DeliveryStatus) -> bool:
    expected = record.expected if isinstance(record, HoldTransition) else "posted"
    recorded_sid = hold.provider.get("sid")
    recorded_status = hold.provider.get("provider_status")
    return (
        hold.status == expected
        and (not record.sid or recorded_sid is None or recorded_sid == record.sid)
        and (recorded_status is None or recorded_status not in record.settled)
    )


def _order_allows(order: Order, record: OrderPaid) -> bool:
    return (not record.payment_intent or order.payment_intent in (None, record.payment_intent)) and (
        not record.session_id or order.session_id == record.session_id
    )


def _note_allowed(order: Order, record: OrderNote) -> bool:
    return (not record.payment_intent or order.payment_intent in (None, record.payment_intent)) and (
        not record.status or order.status != "paid"
    )


def _noted(order: Order, record: OrderNote) -> Order:
    if record.payment_intent:
        order = order._replace(payment_intent=record.payment_intent)
    if record.status:
        order = order._replace(status=record.status, failure=record.failure)
    return order
