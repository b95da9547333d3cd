"""The ports the use cases depend on, with domain values only: the ledger (its movements and the reader side),
how a message leaves (Sender), how money comes in (Payments), the refresh queue, the send
path's auto-recharge (Recharger) and the clock. Adapters implement them; runtime wires them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from smscredits.domain.account import Account, Hold, LedgerRecord
    from smscredits.domain.account_settings import AccountPatch
    from smscredits.domain.auto_recharge import AutoRecharge, Claim
    from smscredits.domain.batches import Batch, Plan, Planned, Settled
    from smscredits.domain.clawbacks import Clawback, Clawed
    from smscredits.domain.movements import HoldRequest, Migration
    from smscredits.domain.orders import Order, Paid, Payment, UnmatchedPayment
    from smscredits.domain.subscriptions import Subscription


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class Ledger(Protocol):
    """Every credit movement, atomic (balance, entries and records in one write pinned to the balance version)
    and idempotent by a deterministic id. `clock` is the time every movement and use case of this ledger reads.

    A hold's id is its message's id (`message_id`)."""

    clock: Clock
    legacy_rates: Mapping[str, int]

    # -- reads
    def get_account(self, account_id: str) -> Account: ...
    def known_account(self, account_id: str) -> Account:
        """The balance this process last wrote or read (no request), else a read."""
        ...

    def get_hold(self, account_id: str, message_id: str) -> Hold: ...
    def get_order(self, order_id: str) -> Order | None: ...
    def get_payment(self, payment_intent: str) -> Payment | None: ...

    # -- accounts
    def create_account(self, account: Account, *, reference: Mapping[str, Any]) -> Account: ...
    def adjust(
        self, account_id: str, pool: str, credits: int, *, op_id: str, actor: str, reason: str
    ) -> tuple[Account, Mapping[str, Any]]: ...
    def change_plan(
        self, account_id: str, plan: str, *, actor: str, op_id: str
    ) -> tuple[Account, Mapping[str, Any]]: ...
    def update_account(
        self, account_id: str, patch: AccountPatch, *, actor: str, op_id: str
    ) -> tuple[Account, Mapping[str, Any]]: ...
    def sync_subscription(self, account_id: str, subscription: Subscription) -> Mapping[str, Any]: ...
    def refresh_allowance(
        self, account_id: str, *, period_start: date, next_refresh_at: datetime, attempt_id: str | None = None
    ) -> tuple[Account, bool]: ...
    def request_migration(self, account_id: str, *, requested_by: str) -> tuple[Account, bool]: ...
    def migrate(
        self,
        account_id: str,
        *,
        ratio: tuple[int, int],
        actor: str,
        op_id: str,
        attempt_id: str | None = None,
    ) -> Migration: ...

    # -- messages
    def hold(
        self, account_id: str, request: HoldRequest, *, attempt_id: str | None = None
    ) -> tuple[Hold, bool]: ...
    def post(
        self, hold: Hold, provider: Mapping[str, Any] | None = None, *, sid: str | None = None
    ) -> Hold: ...
    def void(
        self, hold: Hold, provider: Mapping[str, Any] | None = None, *, sid: str | None = None
    ) -> Hold: ...
    def dispatch(self, hold: Hold, attempt_id: str) -> Hold:
        """Mark a pending hold as handed to the provider by `attempt_id`, once; the hold as it is after."""
        ...

    def refund(self, hold: Hold, provider: Mapping[str, Any]) -> tuple[Hold, bool]: ...
    def charge_late(self, hold: Hold, provider: Mapping[str, Any], *, sid: str) -> tuple[Hold, bool]: ...
    def charge_earlier_try(self, hold: Hold, try_number: int, *, sid: str) -> tuple[str, bool]: ...
    def record_delivery(self, hold: Hold, status: str, *, sid: str, settled: frozenset[str]) -> bool: ...

    # -- purchases and clawbacks
    def open_order(self, order: Order) -> Order: ...
    def record_session(self, order: Order, session_id: str, url: str) -> Order: ...
    def grant_purchase(
        self,
        paid: Paid,
        *,
        source: str,
        auto_recharge: Callable[[AutoRecharge], AutoRecharge] | None = None,
        attempt_id: str | None = None,
    ) -> bool: ...
    def claw_back(
        self, payment: Payment, clawback: Clawback, *, op_id: str, reference: Mapping[str, Any]
    ) -> Clawed | None: ...
    def record_unmatched(self, unmatched: UnmatchedPayment) -> bool: ...
    def note_order(
        self,
        order_id: str,
        *,
        payment_intent: str | None = None,
        status: str | None = None,
        failure: str | None = None,
    ) -> Order | None: ...

    # -- auto-recharge
    def update_auto_recharge(
        self, account_id: str, change: Callable[[AutoRecharge], AutoRecharge], *, op_id: str
    ) -> Account: ...
    def claim_recharge(self, account_id: str, region: str, needed: int) -> Claim: ...
    def settle_recharge(self, paid: Paid, *, source: str) -> bool: ...
    def record_recharge_failure(
        self, account_id: str, region: str, recharge_id: str, *, code: str, message: str | None
    ) -> tuple[bool, str | None]: ...

    # -- batches (docs/product.md §8b)
    def get_batch(self, account_id: str, batch_id: str) -> Batch: ...
    def reserve_batch(
        self,
        account_id: str,
        plan: Plan,
        *,
        batch_id: str,
        request_hash: str,
        attempt_id: str,
        rate: float = 0.0,
    ) -> tuple[Batch, bool]: ...
    def settle_batch(
        self, account_id: str, batch_id: str, count: Callable[[Batch], tuple[Mapping[str, Settled], bool]]
    ) -> tuple[Batch, bool]: ...
    def cancel_batch(self, account_id: str, batch_id: str) -> tuple[Batch, bool]: ...
    def start_dispatch(self, account_id: str, batch_id: str) -> bool: ...


class Statements(Protocol):
    """The reader side of the ledger: statements, an account's whole partition, and the two sparse indexes."""

    def statement(
        self,
        account_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        kinds: tuple[str, ...] = (),
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[list[LedgerRecord], str | None]: ...
    def require_account(self, account_id: str) -> None: ...
    def list_accounts(self, *, limit: int, cursor: str | None = None) -> tuple[list[Account], str | None]:
        """Accounts by id, one page of at most `limit` (the cursor continues after the page's last)."""
        ...

    def partition(self, account_id: str) -> tuple[Account, list[LedgerRecord], list[Hold]]: ...
    def account_ids(self) -> Iterator[str]:
        """Every account id, in no order (the ledger check reads them all)."""
        ...

    def due_accounts(self, now: datetime) -> Iterator[str]: ...
    def stale_holds(self, now: datetime) -> Iterator[tuple[str, str]]: ...


class SendOutcome(NamedTuple):
    """What the provider said to `messages.create`.

    accepted: it took the message (sid known). rejected: it certainly did not send (4xx). retryable: it did
    not take it now (429, 5xx): the caller may try again with the same key. unknown: we cannot tell (timeout
    after the request left) - never re-sent; the callback or the sweeper decides.
    """

    result: Literal["accepted", "rejected", "retryable", "unknown"]
    sid: str | None = None
    status: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    num_segments: int | None = None  # Twilio's count, from its answer to the create (compared with ours)


class Sender(Protocol):
    def send(self, *, to: str, body: str, status_callback: str) -> SendOutcome: ...


class ChargeOutcome(NamedTuple):
    """What the payment provider said to an off-session charge.

    succeeded: paid (payment_intent set). pending: accepted but not final, or we cannot tell (timeout,
    5xx) - the webhook or a retry with the same idempotency key settles it. declined /
    authentication_required: certainly not paid.
    """

    result: Literal["succeeded", "pending", "declined", "authentication_required"]
    payment_intent: Mapping[str, Any] | None = None
    code: str | None = None
    message: str | None = None


class Payments(Protocol):
    def construct_event(self, payload: str, signature: str) -> dict[str, Any]:
        """The webhook event the signature verifies, as plain data (InvalidSignature, MalformedProviderEvent)."""
        ...

    def create_customer(self, account_id: str) -> str: ...

    def create_checkout_session(self, params: Mapping[str, Any], idempotency_key: str) -> tuple[str, str]: ...

    def payment_method_of(self, payment_intent_id: str) -> str | None: ...

    def paid_intent(self, payment_intent_id: str) -> dict[str, Any]:
        """The PaymentIntent as plain data with its latest charge expanded (the card that paid, the receipt)."""
        ...

    def setup_payment_method(self, setup_intent_id: str) -> str | None:
        """The card a completed SetupIntent saved."""
        ...

    def charge_off_session(
        self,
        *,
        amount_cents: int,
        customer: str,
        payment_method: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> ChargeOutcome: ...

    def find_recharge_intent(self, recharge_id: str, payment_intent_id: str | None) -> dict[str, Any] | None:
        """The PaymentIntent a recharge made, as plain data: retrieved by id when its order recorded one, else
        searched by the recharge id in its metadata; None when Stripe has none."""
        ...


class StatementExports(Protocol):
    def export(self, account_id: str, filename: str, body: bytes) -> str:
        """Keep a statement too large to answer inline; returns a short-lived URL that downloads it."""
        ...


class CustomerDirectory(Protocol):
    """Which account a Stripe customer belongs to (Stripe Billing's events name the customer, not the account)."""

    def account_for(self, customer_id: str) -> str | None: ...

    def link(self, customer_id: str, account_id: str) -> str:
        """Link the customer to the account unless it is linked already; returns the account it is linked to."""
        ...


class RefreshQueue(Protocol):
    def send(self, account_ids: Sequence[str]) -> int:
        """Queue every id; returns how many were refused (they stay due)."""
        ...


class BatchMessages(Protocol):
    """A batch's per-message records, kept off the account's partition and never with the balance."""

    def write_all(self, batch: Batch, messages: Sequence[Planned]) -> None: ...
    def read(self, batch_id: str, indexes: Sequence[int]) -> list[dict[str, Any]]: ...
    def move(
        self, batch_id: str, moves: Sequence[tuple[int, str, Mapping[str, Any]]], expected: str
    ) -> list[int]:
        """Each (index, status, fields) from status `expected`; returns the indexes that moved."""
        ...

    def callback(
        self, batch_id: str, index: int, status: str, sid: str, settled: Iterable[str]
    ) -> tuple[bool, str | None]:
        """A Twilio status on a handed-over message: (whether it moved the record, the record's sweep mark as the
        write found it: None when the grace period has not settled it)."""
        ...

    def sweep(self, batch: Batch) -> int:
        """Mark each record with no final status as the grace period settles it; returns how many."""
        ...

    def all(self, batch: Batch) -> Iterator[dict[str, Any]]: ...
    def page(
        self, batch: Batch, *, after: int, limit: int, status: str | None
    ) -> tuple[list[dict[str, Any]], int | None]: ...


class BatchQueue(Protocol):
    """The dispatch queue: jobs for the batch worker, each visible after its delay (seconds, at most 900)."""

    def send(self, jobs: Sequence[tuple[Mapping[str, Any], int]]) -> None: ...


class StatusQueue(Protocol):
    def send(self, status: Mapping[str, Any]) -> None:
        """Queue one message status (account_id, message_id, status, sid, error_code) for the status worker."""
        ...


class Recharger(Protocol):
    """What the send path asks of auto-recharge. `deadline` (time.monotonic()) is when the send's function is
    stopped: a recharge that might not finish before it, leaving time to send, is not started."""

    def when_short(self, account_id: str, region: str, needed: int, *, deadline: float | None = None) -> bool:
        """The pools cannot cover a message: recharge now or wait for the recharge in flight. True when the
        hold may succeed if tried again."""
        ...

    def after_debit(self, account_id: str, region: str, *, deadline: float | None = None) -> None:
        """A message kept its credits: recharge if that left the region at or below its threshold."""
        ...
