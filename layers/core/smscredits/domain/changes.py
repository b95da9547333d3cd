"""What one ledger operation writes, in domain terms: a Change.

A Change is computed by a pure function (domain/movements.py) from the account state it will be pinned to:
the movement of the balance (new pools and held, the entries that explain it), the account fields set with
it, and the other records written in the same atomic write, each with its precondition. Every implementation
of the Ledger port applies a Change all or nothing: the balance only if its version is still the one the
Change was computed from, each record only if its precondition holds. When a record's precondition fails,
the implementation hands back that record as it is now (`Refused.found`), and the operation decides what
that means (a duplicate, a message that already ended, its own earlier write).

The events a Change causes (`events`) are written in the same atomic write (the outbox, docs/events.md): a
movement that lands has its events, one that is refused has none. Extending it: records written without
touching the balance (a hot account's posts) are one more field of Change that tells the implementations to
skip the balance write; their events ride along the same way.

NamedTuples rather than dataclasses: each costs about a tenth of a frozen dataclass to define, and the send
function's cold start defines all of them (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from smscredits.domain.account import Account, Hold
    from smscredits.domain.batches import Batch
    from smscredits.domain.clawbacks import Refunds
    from smscredits.domain.ledger import Movement
    from smscredits.domain.orders import Order, Payment, UnmatchedPayment

NOTHING: Mapping[str, Any] = MappingProxyType({})


class Guard(NamedTuple):
    """The operation record that makes an operation happen once per `op_id`. Written: it must not exist.
    Found: the first write's, whose outcome a repeat answers."""

    op_id: str
    outcome: Mapping[str, Any]
    attempt_id: str | None = None  # which call wrote it: that call's own retry is not a duplicate
    request_hash: str | None = None  # what was asked: the same id with another request is refused


class NewHold(NamedTuple):
    """A message's hold; it must not exist (the message id is the caller's key), or, for a hold's later try
    (`hold.tries` > 1), it must be the previous try, voided as retryable (Twilio was busy: nothing was sent)."""

    hold: Hold
    sweep_after: datetime  # when the sweeper may void it if nothing ended it


class HoldTransition(NamedTuple):
    """Hold `message_id` moves from status `expected` to `status` with the provider map `provider`, provided
    the SID recorded on it, if any, is `sid` (when given) and the provider status recorded on it is none of
    `settled`. `ended_at` set: the hold ends now (posted or voided) and leaves the sweeper's index; the
    message (its body and full number) may then be deleted after `expires_at` (docs/security.md)."""

    account_id: str
    message_id: str
    expected: str
    status: str
    provider: Mapping[str, Any]
    ended_at: datetime | None
    sid: str | None = None
    settled: frozenset[str] = frozenset()
    expires_at: datetime | None = None


class Dispatch(NamedTuple):
    """Hold `message_id` is about to be handed to Twilio by `attempt_id`: it must be pending and never handed
    over before, so that exactly one attempt sends it and a replay after a crash knows whether it may have left."""

    account_id: str
    message_id: str
    attempt_id: str


class DeliveryStatus(NamedTuple):
    """A later delivery status on a posted message (no credits move): its provider status and SID, provided it
    is posted with a provider map, its recorded SID, if any, is `sid`, and its recorded status is none of
    `settled`."""

    account_id: str
    message_id: str
    status: str
    sid: str
    settled: frozenset[str]


class NewOrder(NamedTuple):
    """An order recorded before Stripe is asked; it must not exist."""

    order: Order


class OrderSession(NamedTuple):
    """The Checkout Session Stripe made for an order: the order exists and has no session or this one."""

    order_id: str
    session_id: str
    url: str


class OrderPaid(NamedTuple):
    """The order is paid by `payment_intent` (bound on its first payment; any other is refused), through
    `session_id` when given (the order's own session)."""

    order_id: str
    payment_intent: str | None
    session_id: str | None
    paid_at: datetime


class OrderNote(NamedTuple):
    """What became of an order short of a grant: the PaymentIntent Stripe made for it (bound once, as a grant
    binds it: another is refused), and/or a final status without a grant (`failed`, `unfulfilled`) with its
    reason, refused on a paid order (a grant is never undone by a note)."""

    order_id: str
    payment_intent: str | None = None
    status: str | None = None
    failure: str | None = None


class NewPayment(NamedTuple):
    """The record of a granted payment (what its refunds claw back from); it must not exist."""

    payment: Payment


class PaymentRefunds(NamedTuple):
    """A payment's refunds and disputes move from `before` (they must still be exactly that: the same number of
    steps applied) to `after`; `taken` credits were taken back, net of any given back."""

    payment_intent: str
    before: Refunds
    after: Refunds
    taken: int


class NewUnmatched(NamedTuple):
    """A payment that matches no order, kept once per Stripe object."""

    unmatched: UnmatchedPayment


class NewBatch(NamedTuple):
    """A batch and its open hold (the reservation); it must not exist (its id is the caller's key)."""

    batch: Batch


class BatchSettlement(NamedTuple):
    """The batch moves from `before` to `after` (its counters, status and open hold), provided it has still
    settled exactly `before.settlements` times."""

    before: Batch
    after: Batch


class BatchCancel(NamedTuple):
    """Cancel requested on an open batch; refused when it is already requested or the batch ended."""

    account_id: str
    batch_id: str


class BatchDispatch(NamedTuple):
    """The batch's messages are written and queued (set once; a resumed create finds it)."""

    account_id: str
    batch_id: str


Record = (
    Guard
    | NewHold
    | HoldTransition
    | Dispatch
    | DeliveryStatus
    | NewOrder
    | OrderSession
    | OrderPaid
    | NewPayment
    | PaymentRefunds
    | OrderNote
    | NewUnmatched
    | NewBatch
    | BatchSettlement
    | BatchCancel
    | BatchDispatch
)


class Event(NamedTuple):
    """An event a movement causes (domain/events.py names them); its id and time are added when written."""

    detail_type: str
    detail: Mapping[str, Any]


class Change(NamedTuple):
    """One atomic write: the balance movement pinned to the version it was computed from, the account fields
    set with it, and `records` in order (a refusal names the first whose precondition failed)."""

    op_id: str  # the operation's id, on every entry it writes
    movement: Movement
    reference: Mapping[str, Any] = NOTHING  # on every entry: what a statement shows about it
    account: Mapping[str, Any] = NOTHING  # Account fields set with the movement
    records: tuple[Record, ...] = ()
    result: Any = None  # what the operation answers when the Change lands
    events: tuple[Event, ...] = ()  # written with it (the outbox), in this order


class Committed(NamedTuple):
    account: Account  # after the Change
    change: Change


class Refused(NamedTuple):
    """A write refused because `record`'s precondition failed; `found` is that record as it is now (None:
    absent), `account` the balance as last seen (None for a write without a balance)."""

    account: Account | None
    record: Record
    found: Hold | Order | Payment | Guard | Batch | None


class Unchanged(Exception):
    """The operation has nothing to do on this state (already refreshed, plan already in place...); `answer`
    is what it answers."""

    def __init__(self, account: Account, answer: Any = None) -> None:
        super().__init__("unchanged")
        self.account = account
        self.answer = answer
