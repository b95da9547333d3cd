"""Orders: every payment this service asks Stripe for (a Checkout Session, an auto-recharge) is recorded
before Stripe is asked, and a confirmed payment is granted only against its order, on the order's terms
(domain/orders.py says what must match).

The order is written before Stripe is asked, under our own deterministic id (a hash of the account and the
caller's Idempotency-Key; the recharge id for auto-recharge), so no crash can leave a payment without its
order. A Checkout order gets its session id when Stripe answers; a session whose id the order never
recorded was never shown to anyone (the answer that carries its URL is sent after the record), so it is
unmatched. The PaymentIntent id is bound to the order by the grant, in the same write. A payment that
matches nothing is recorded as unmatched, answered 2xx, counted (`UnmatchedPayment`) and alarmed — never
granted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from smscredits.domain.catalog import pack_price_cents
from smscredits.domain.errors import IdempotencyKeyReused
from smscredits.domain.idempotency import checkout_order_id, request_hash
from smscredits.domain.orders import (
    CURRENCY,
    MAX_KEPT,
    UNFULFILLED,
    Order,
    OrderKind,
    Unmatched,
    UnmatchedPayment,
    check_match,
    is_order_id,
)
from smscredits.observability import count, logger

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger


def find_order(ledger: Ledger, pointer: Any) -> Order | None:
    """The order an event's metadata points at (anything that is not one of our ids points at none)."""
    return ledger.get_order(pointer) if is_order_id(pointer) else None


def open_checkout(
    ledger: Ledger,
    *,
    account_id: str,
    idempotency_key: str,
    region: str,
    packs: int,
    customer_id: str,
    save_card: bool,
) -> Order:
    """Record the Checkout order of (account, key) before Stripe is asked, or return the one recorded.
    The same key with another region or quantity is idempotency_key_reused."""
    order = Order(
        order_id=checkout_order_id(account_id, idempotency_key),
        kind="checkout",
        account_id=account_id,
        region=region,
        packs=packs,
        amount_cents=pack_price_cents(region, packs),
        currency=CURRENCY,
        customer_id=customer_id,
        status="creating",
        save_card=save_card,
        request_hash=request_hash({"region": region, "packs": packs}),
        created_at=ledger.clock(),
    )
    recorded = ledger.open_order(order)
    if recorded.request_hash != order.request_hash:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different purchase.", {"header": "Idempotency-Key"}
        )
    return recorded


def record_session(ledger: Ledger, order: Order, session_id: str, url: str) -> Order:
    """Note the session Stripe created for the order (before its URL is shown to anyone)."""
    return ledger.record_session(order, session_id, url)


def match(
    ledger: Ledger,
    *,
    kind: OrderKind,
    metadata: Mapping[str, Any],
    amount: Any,
    currency: Any,
    customer: str | None,
    session_id: str | None = None,
    payment_intent: str | None = None,
) -> Order:
    """The order this confirmed payment pays for, or Unmatched (with the reason)."""
    return check_match(
        find_order(ledger, metadata.get("order_id")),
        kind=kind,
        metadata=metadata,
        amount=amount,
        currency=currency,
        customer=customer,
        session_id=session_id,
        payment_intent=payment_intent,
    )


def record_unmatched(
    ledger: Ledger, *, object_id: str, event_type: str, unmatched: Unmatched, payment: Mapping[str, Any]
) -> str:
    """Keep a payment that matches no order (once per Stripe object id) for support to resolve, and alarm.
    One its order's customer made for it, but not of the order's amount or currency, is an unfulfilled
    payment: the order is marked `unfulfilled` (the owner sees it), counted apart (`UnfulfilledPayment`)."""
    if unmatched.reason == UNFULFILLED:
        ledger.note_order(
            str(unmatched.details["order_id"]), status="unfulfilled", failure="paid_amount_differs"
        )
    kept = UnmatchedPayment(
        object_id=object_id,
        event_type=event_type,
        reason=unmatched.reason,
        details=json.dumps(unmatched.details, sort_keys=True, default=str)[:MAX_KEPT],
        payment=json.dumps(payment, sort_keys=True, default=str)[:MAX_KEPT],
        created_at=ledger.clock(),
    )
    outcome = "unfulfilled" if unmatched.reason == UNFULFILLED else "unmatched"
    if not ledger.record_unmatched(kept):
        logger.info(
            "unmatched payment seen again", extra={"object_id": object_id, "reason": unmatched.reason}
        )
        return outcome
    if unmatched.reason == UNFULFILLED:
        count("UnfulfilledPayment")
        alert = "ALERT customer paid an order but not its amount; nothing granted"
    else:
        count("UnmatchedPayment")
        alert = "ALERT stripe payment matches no order; nothing granted"
    logger.error(
        alert,
        extra={
            "object_id": object_id,
            "event_type": event_type,
            "reason": unmatched.reason,
            **unmatched.details,
        },
    )
    return outcome
