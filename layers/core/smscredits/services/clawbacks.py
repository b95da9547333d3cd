"""Clawbacks: a Stripe refund or dispute takes back its share of the payment's still-unspent credits, and a
reversed dispute gives back what it took, each step once (domain/clawbacks.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from smscredits.domain import clawbacks as C
from smscredits.domain.errors import Conflict, UpstreamUnavailable
from smscredits.observability import logger

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.domain.orders import Payment
    from smscredits.services.ports import Ledger

MAX_ATTEMPTS = 8


class PaymentNotGranted(Conflict):
    code = "payment_not_granted"


def refund(
    ledger: Ledger, *, payment_intent: str, charge_id: str, event_key: str, amount_refunded: int, amount: int
) -> str:
    """A charge.refunded: the charge's `amount_refunded / amount` (its own currency) of the payment's credits
    taken back. Returns clawed_back, recorded (nothing left to take) or duplicate."""

    def step(payment: Payment) -> C.Clawback | None:
        return C.refund_step(payment, amount_refunded=amount_refunded, charge_amount=amount)

    reference = {"charge": charge_id, "payment_intent": payment_intent, "event": event_key}
    outcome = _apply(
        ledger, payment_intent, step, op_id=f"clawback:{charge_id}:{event_key}", reference=reference
    )
    return "duplicate" if outcome == "unchanged" else outcome


def dispute(
    ledger: Ledger, *, payment_intent: str, charge_id: str, event_type: str, dispute: Mapping[str, Any]
) -> str:
    """One charge.dispute.* event: the dispute moved to where the event says it is (C.dispute_stage). Returns
    clawed_back, given_back, recorded (it moved, no credit did) or unchanged."""
    dispute_id = str(dispute.get("id"))
    stage = C.dispute_stage(
        event_type,
        status=dispute.get("status"),
        amount=int(dispute.get("amount") or 0),
        balance_transactions=dispute.get("balance_transactions") or [],
    )

    def step(payment: Payment) -> C.Clawback | None:
        return C.dispute_step(payment, dispute_id, stage)

    # One step per stage: the same stage delivered again (by any event type) is the same operation.
    op_id = f"dispute:{dispute_id}:{stage.withdrawn_cents}:{'closed' if stage.closed else 'open'}"
    reference = {
        "charge": charge_id,
        "payment_intent": payment_intent,
        "dispute": dispute_id,
        "event": event_type,
    }
    return _apply(ledger, payment_intent, step, op_id=op_id, reference=reference)


def _apply(
    ledger: Ledger,
    payment_intent: str,
    step: Callable[[Payment], C.Clawback | None],
    *,
    op_id: str,
    reference: Mapping[str, Any],
) -> str:
    """Compute the step from the payment as read and write it on that very state; read again if it moved."""
    for _ in range(MAX_ATTEMPTS):
        payment = ledger.get_payment(payment_intent)
        if payment is None:
            logger.error(
                "ALERT refund or dispute for a payment we never granted",
                extra={"payment_intent": payment_intent, **reference},
            )
            # Its grant may still be on the way (Stripe delays, reorders and retries events): answer non-2xx
            # so Stripe redelivers this one later; answering 200 would let the later grant keep the credits.
            raise PaymentNotGranted(
                "No pack was granted for this payment yet; deliver this event again later.",
                {"payment_intent": payment_intent},
            )
        clawback = step(payment)
        if clawback is None:
            return "unchanged"
        try:
            clawed = ledger.claw_back(payment, clawback, op_id=op_id, reference=reference)
        except C.PaymentMoved:
            continue
        if clawed is None:
            return "duplicate"
        logger.info(
            "clawback",
            extra={**reference, "due": clawback.due, "taken": clawed.taken, "returned": clawed.returned},
        )
        if clawed.returned:
            return "given_back"
        return "clawed_back" if clawed.taken else "recorded"
    raise UpstreamUnavailable(
        "The payment record is too busy; try again.", {"payment_intent": payment_intent}
    )
