"""Clawbacks: a Stripe refund or dispute takes back the payment's still-unspent credits, once per event."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smscredits.domain.errors import Conflict, UpstreamUnavailable
from smscredits.domain.orders import PaymentMoved, clawback_for
from smscredits.observability import logger

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger

MAX_ATTEMPTS = 8


class PaymentNotGranted(Conflict):
    code = "payment_not_granted"


def claw_back(
    ledger: Ledger,
    *,
    payment_intent: str,
    charge_id: str,
    event_key: str,
    refunded_cents: int = 0,
    disputed: bool = False,
) -> str:
    """Take back the payment's still-unspent credits in proportion to what was refunded or disputed
    (domain/orders.clawback_for), never below zero: what the pool no longer holds was spent. A dispute also
    switches auto-recharge off. Returns clawed_back or duplicate."""
    op_id = f"clawback:{charge_id}:{event_key}"
    reference = {"charge": charge_id, "payment_intent": payment_intent, "event": event_key}
    for _ in range(MAX_ATTEMPTS):
        payment = ledger.get_payment(payment_intent)
        if payment is None:
            logger.error(
                "ALERT refund or dispute for a payment we never granted",
                extra={"payment_intent": payment_intent, "charge": charge_id},
            )
            # Its grant may still be on the way (Stripe delays, reorders and retries events): answer non-2xx
            # so Stripe redelivers this one later; answering 200 would let the later grant keep the credits.
            raise PaymentNotGranted(
                "No pack was granted for this payment yet; deliver this event again later.",
                {"payment_intent": payment_intent},
            )
        clawback = clawback_for(payment, refunded_cents=refunded_cents, disputed=disputed)
        try:
            taken = ledger.claw_back(
                payment, clawback, op_id=op_id, reference=reference, pause_auto_recharge=disputed
            )
        except PaymentMoved:
            continue
        if taken is None:
            return "duplicate"
        logger.info("clawback", extra={"charge": charge_id, "due": clawback.due, "taken": taken})
        return "clawed_back"
    raise UpstreamUnavailable(
        "The payment record is too busy; try again.", {"payment_intent": payment_intent}
    )
