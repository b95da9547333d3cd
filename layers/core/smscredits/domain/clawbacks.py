"""Clawbacks: what a Stripe refund or dispute of a granted payment takes back, and what a reversed dispute
gives back, as arithmetic on the payment's record (its `Refunds`).

A payment's credits are covered in proportion to what its charge lost: the amount refunded so far (Stripe
sends it to date) plus what its disputes hold withdrawn now, never more than the charge. What is due is that
share of the payment's credits, rounded down (never a credit that was not paid back), less what earlier steps
already accounted for; the ledger takes it from the region's pool, never below zero (what the pool no longer
holds was spent). A refund's share is the charge's own `amount_refunded / amount`; a dispute's is its `amount`
over the charge's, which the grant checked is the order's amount and currency (Stripe disputes in the charge's
currency: docs.stripe.com/api/disputes/object).

A dispute, as Stripe documents it (docs.stripe.com/disputes/how-disputes-work, .../api/disputes/object,
.../api/events/types):
- an inquiry (`warning_needs_response`, `warning_under_review`) withdraws nothing, so it takes nothing;
- a chargeback takes back its share once its funds are withdrawn: `charge.dispute.funds_withdrawn`, or a
  withdrawal among its `balance_transactions` (negative amounts; a reversal is a positive one);
- `won`, `warning_closed`, `prevented` or `charge.dispute.funds_reinstated`: the funds came back, so what it
  took is given back (what it took, never more: what the pool no longer held was not taken), and what refunds
  still cover is taken again; `lost`: the funds stay withdrawn.
Stripe promises no delivery order, so a closed dispute is final (a created or funds_withdrawn snapshot
delivered after the close changes nothing), and before the close no snapshot withdraws less than one already
seen. Stripe allows one dispute per charge; the record still keys disputes by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from smscredits.domain.orders import Payment

INQUIRY_OPEN = frozenset({"warning_needs_response", "warning_under_review"})
FUNDS_RETURNED = frozenset({"won", "warning_closed", "prevented"})
FUNDS_WITHDRAWN_EVENT = "charge.dispute.funds_withdrawn"
FUNDS_REINSTATED_EVENT = "charge.dispute.funds_reinstated"
# Every dispute event carries the dispute as it is now (docs.stripe.com/api/events/types).
DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.updated",
    FUNDS_WITHDRAWN_EVENT,
    FUNDS_REINSTATED_EVENT,
    "charge.dispute.closed",
)


class DisputeState(NamedTuple):
    """One dispute of a payment, as the ledger last applied it."""

    withdrawn_cents: int = 0  # what it holds withdrawn now (the payment's cents)
    due: int = 0  # credits it added to the payment's accounted credits
    taken: int = 0  # credits it took from the pool: what its reversal gives back
    closed: bool = False  # won, lost, warning_closed...: nothing later changes it


NO_DISPUTES: Mapping[str, DisputeState] = MappingProxyType({})


class Refunds(NamedTuple):
    """What a granted payment has lost so far, and the credits already accounted for."""

    refunded_cents: int = 0
    disputed_cents: int = 0  # what its disputes hold withdrawn now
    clawed_credits: int = 0  # credits the refunds and disputes so far cover (taken or already spent)
    disputes: Mapping[str, DisputeState] = NO_DISPUTES
    moves: int = 0  # steps applied: each step is written only on the state it was computed from


NOTHING_REFUNDED = Refunds()


class DisputeStage(NamedTuple):
    """Where one Stripe event says a dispute is: the cents it holds withdrawn, and whether it is closed."""

    withdrawn_cents: int
    closed: bool


class Clawback(NamedTuple):
    """One step of a payment's refunds and disputes: give back `returned` credits, then take back up to `due`;
    the payment's refunds move from `before` to `after` (the credits the ledger manages to take are added to
    `dispute`'s when the step is a dispute's)."""

    due: int
    before: Refunds
    after: Refunds
    returned: int = 0
    dispute: str | None = None
    auto_recharge: Literal["pause", "resume"] | None = None


class Clawed(NamedTuple):
    """What a step moved: credits taken back, credits given back."""

    taken: int
    returned: int


class PaymentMoved(Exception):
    """Another step of the same payment landed between its read and this write: read it again."""


def refund_step(payment: Payment, *, amount_refunded: int, charge_amount: int) -> Clawback | None:
    """The step of a charge.refunded whose charge of `charge_amount` has `amount_refunded` refunded to date
    (both in the charge's currency); None when it adds nothing (a repeat, or an older delivery)."""
    share = payment.amount_cents * min(max(amount_refunded, 0), charge_amount) // charge_amount
    before = payment.refunds
    if share <= before.refunded_cents:
        return None
    refunds = before._replace(refunded_cents=share, moves=before.moves + 1)
    due, clawed = _towards(payment, refunds, before.clawed_credits)
    return Clawback(due, before, refunds._replace(clawed_credits=clawed))


def dispute_stage(
    event_type: str, *, status: str | None, amount: int, balance_transactions: Iterable[Mapping[str, Any]]
) -> DisputeStage:
    """Where a dispute event says the dispute is (see the module's docstring)."""
    if event_type == FUNDS_REINSTATED_EVENT or status in FUNDS_RETURNED:
        return DisputeStage(0, closed=True)
    if status == "lost":
        return DisputeStage(amount, closed=True)
    if status in INQUIRY_OPEN:
        return DisputeStage(0, closed=False)
    net = sum(int(transaction.get("amount") or 0) for transaction in balance_transactions)
    withdrawn = event_type == FUNDS_WITHDRAWN_EVENT or net < 0
    return DisputeStage(amount if withdrawn else 0, closed=False)


def dispute_step(payment: Payment, dispute_id: str, stage: DisputeStage) -> Clawback | None:
    """The step that moves dispute `dispute_id` to `stage`; None when it changes nothing."""
    before = payment.refunds
    current = before.disputes.get(dispute_id, DisputeState())
    if current.closed:
        return None
    withdrawn = min(max(stage.withdrawn_cents, 0), payment.amount_cents)
    if not stage.closed:
        withdrawn = max(withdrawn, current.withdrawn_cents)
        if withdrawn == current.withdrawn_cents:
            return None
    if withdrawn >= current.withdrawn_cents:
        accounted, returned, state = before.clawed_credits, 0, current
    else:  # its funds came back: undo what it accounted for, then take what the rest still covers
        accounted, returned, state = before.clawed_credits - current.due, current.taken, DisputeState()
    refunds = before._replace(
        disputed_cents=before.disputed_cents - current.withdrawn_cents + withdrawn, moves=before.moves + 1
    )
    due, clawed = _towards(payment, refunds, accounted)
    state = state._replace(withdrawn_cents=withdrawn, due=state.due + due, closed=stage.closed)
    after = refunds._replace(clawed_credits=clawed, disputes={**before.disputes, dispute_id: state})
    auto: Literal["pause", "resume"] | None = None
    if current.withdrawn_cents == 0 < withdrawn:
        auto = "pause"
    elif withdrawn == 0 < current.withdrawn_cents:
        auto = "resume"
    return Clawback(due, before, after, returned, dispute_id, auto)


def with_taken(refunds: Refunds, dispute_id: str | None, taken: int) -> Refunds:
    """The refunds after a step whose dispute (if any) took `taken` credits from the pool."""
    if dispute_id is None:
        return refunds
    state = refunds.disputes[dispute_id]
    return refunds._replace(
        disputes={**refunds.disputes, dispute_id: state._replace(taken=state.taken + taken)}
    )


def _towards(payment: Payment, refunds: Refunds, accounted: int) -> tuple[int, int]:
    """(credits due, credits accounted for after) when `refunds` cover their share and `accounted` are covered."""
    covered = min(payment.amount_cents, refunds.refunded_cents + refunds.disputed_cents)
    target = payment.credits * covered // payment.amount_cents
    return max(0, target - accounted), max(target, accounted)
