"""What each verified Stripe event does to the ledger; every outcome is idempotent per business key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from smscredits.domain.clawbacks import DISPUTE_EVENTS
from smscredits.domain.errors import MalformedProviderEvent, UpstreamFailed, UpstreamUnavailable
from smscredits.domain.orders import (
    Order,
    Paid,
    Unmatched,
    claims_to_be_ours,
    payment_summary,
    receipt_url_of,
    stripe_id,
)
from smscredits.observability import count, logger
from smscredits.services import card_setup, clawbacks, orders, recharge, subscriptions
from smscredits.services.purchases import remember_customer

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger, Payments


class StripePorts(NamedTuple):
    """What the Stripe events need: the ledger and Stripe itself (the events a grant causes are written with
    it: domain/payment_movements.py)."""

    ledger: Ledger
    payments: Payments
    billing: subscriptions.BillingPorts | None = None  # Stripe Billing's events (subscriptions, invoices)


def handle_event(ports: StripePorts, event: Mapping[str, Any]) -> str:
    """Apply one event; returns what happened (for the log and the answer). Unknown types change nothing."""
    kind = str(event.get("type", ""))
    obj: Mapping[str, Any] = (event.get("data") or {}).get("object") or {}
    handler = _HANDLERS.get(kind)
    if ports.billing is not None and kind in subscriptions.HANDLED:
        outcome = subscriptions.handle(
            ports.billing, event
        )  # reads the event's own time, not only its object
    elif handler is None:
        return "ignored"
    else:
        outcome = handler(ports, obj)
    logger.info("stripe event", extra={"event_id": event.get("id"), "type": kind, "outcome": outcome})
    return outcome


def _session_completed(ports: StripePorts, session: Mapping[str, Any]) -> str:
    if session.get("mode") == "setup":
        return card_setup.setup_completed(ports.ledger, ports.payments, session)
    if session.get("payment_status") != "paid":
        return "awaiting_payment"  # a delayed method: async_payment_succeeded grants later
    outcome, order, paid = _grant_session(ports, session, "checkout.session.completed")
    intent = _id(session.get("payment_intent"))
    if order is not None and order.save_card and intent:
        # The event carries no payment method: the PaymentIntent read for the receipt names the card that paid
        # (asked again if that read failed), so auto-recharge can use it.
        method = _id(paid.get("payment_method")) if paid else ports.payments.payment_method_of(intent)
        if method:
            remember_customer(ports.ledger, order.account_id, order.customer_id, method)
    return outcome


def _async_succeeded(ports: StripePorts, session: Mapping[str, Any]) -> str:
    return _grant_session(ports, session, "checkout.session.async_payment_succeeded")[0]


def _async_failed(ports: StripePorts, session: Mapping[str, Any]) -> str:
    """A delayed method (a bank debit) failed: nothing was paid, so nothing is granted; the order says so."""
    metadata = _metadata(session)
    if not claims_to_be_ours(metadata):
        return "ignored"  # another integration's session on a shared Stripe account
    session_id = stripe_id(session.get("id"))
    order = orders.find_order(ports.ledger, metadata.get("order_id"))
    if order is None or order.kind != "checkout" or order.session_id != session_id:
        logger.warning("failed checkout payment of no order of ours", extra={"session_id": session_id})
        return "ignored"  # nothing was paid: there is nothing to resolve
    if order.status == "failed":
        return "duplicate"
    noted = ports.ledger.note_order(
        order.order_id,
        payment_intent=_id(session.get("payment_intent")),
        status="failed",
        failure="async_payment_failed",
    )
    if noted is None:
        return "ignored"  # it was paid after all (a grant is never undone by a failure)
    count("CheckoutPaymentFailed")
    logger.warning("checkout payment failed", extra={"session_id": session_id, "order_id": order.order_id})
    return "payment_failed"


def _grant_session(
    ports: StripePorts, session: Mapping[str, Any], event_type: str
) -> tuple[str, Order | None, Mapping[str, Any] | None]:
    """Grant a paid session's order; (outcome, the order when the session is one of ours as recorded, its
    PaymentIntent as read for the receipt or None)."""
    metadata = _metadata(session)
    if not claims_to_be_ours(metadata):
        return "ignored", None, None  # another integration's session on a shared Stripe account
    session_id = stripe_id(session.get("id"))
    intent = _id(session.get("payment_intent"))
    try:
        order = orders.match(
            ports.ledger,
            kind="checkout",
            metadata=metadata,
            amount=session.get("amount_total"),
            currency=session.get("currency"),
            customer=_id(session.get("customer")),
            session_id=session_id,
            payment_intent=intent,
        )
        # A paid order's grant is a duplicate: Stripe is asked for the receipt only before it is granted.
        paid = paid_intent(ports, intent) if intent and order.status != "paid" else None
        receipt = receipt_url_of(paid) if paid else None
        applied = ports.ledger.grant_purchase(Paid(order, intent, session_id, receipt), source="checkout")
    except Unmatched as unmatched:
        return _unmatched(ports, session_id, event_type, unmatched, session), None, None
    return ("granted" if applied else "duplicate"), order, paid


def _intent_succeeded(ports: StripePorts, intent: Mapping[str, Any]) -> str:
    metadata = _metadata(intent)
    if not claims_to_be_ours(metadata):
        return "ignored"  # another integration's payment on a shared Stripe account
    intent_id = stripe_id(intent.get("id"))
    if metadata.get("kind") == "recharge":
        return recharge.settle_success(
            ports.ledger, intent, source="webhook", find_receipt=lambda: receipt_url(ports, intent_id, intent)
        )
    try:
        order = orders.match(
            ports.ledger,
            kind="checkout",
            metadata=metadata,
            amount=intent.get("amount_received", intent.get("amount")),
            currency=intent.get("currency"),
            customer=_id(intent.get("customer")),
            payment_intent=intent_id,
        )
        receipt = receipt_url(ports, intent_id, intent) if order.status != "paid" else None
        applied = ports.ledger.grant_purchase(
            Paid(order, intent_id, receipt_url=receipt), source="payment_intent"
        )
    except Unmatched as unmatched:
        return _unmatched(ports, intent_id, "payment_intent.succeeded", unmatched, intent)
    method = _id(intent.get("payment_method"))
    if order.save_card and intent.get("setup_future_usage") == "off_session" and method:
        remember_customer(ports.ledger, order.account_id, order.customer_id, method)
    return "granted" if applied else "duplicate"


def receipt_url(ports: StripePorts, intent_id: str, intent: Mapping[str, Any]) -> str | None:
    """The receipt of the charge that paid: from the PaymentIntent when its charge is expanded, else asked of
    Stripe (an event's `latest_charge` is only an id)."""
    found = receipt_url_of(intent)
    if found:
        return found
    paid = paid_intent(ports, intent_id)
    return receipt_url_of(paid) if paid else None


def paid_intent(ports: StripePorts, intent_id: str) -> Mapping[str, Any] | None:
    """The PaymentIntent with its charge expanded, for its receipt. Stripe out of reach does not hold the
    credits back: the payment is granted without a receipt link (None; logged and counted)."""
    try:
        return ports.payments.paid_intent(intent_id)
    except (UpstreamUnavailable, UpstreamFailed) as error:
        logger.warning(
            "receipt not known", extra={"payment_intent": intent_id, "error": type(error).__name__}
        )
        count("ReceiptUnknown")
        return None


def _unmatched(
    ports: StripePorts, object_id: str, event_type: str, unmatched: Unmatched, obj: Mapping[str, Any]
) -> str:
    return orders.record_unmatched(
        ports.ledger,
        object_id=object_id,
        event_type=event_type,
        unmatched=unmatched,
        payment=payment_summary(obj),
    )


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _intent_failed(ports: StripePorts, intent: Mapping[str, Any]) -> str:
    return recharge.settle_failed_intent(ports.ledger, intent)


def _charge_refunded(ports: StripePorts, charge: Mapping[str, Any]) -> str:
    intent = _id(charge.get("payment_intent"))
    if not intent:
        return "ignored"
    refunds = ((charge.get("refunds") or {}).get("data")) or []
    # Stripe stopped embedding refunds in charges; the cumulative amount names this state just as well.
    event_key = str(refunds[0]["id"]) if refunds else f"refunded-{charge.get('amount_refunded')}"
    amount = charge.get("amount")
    if not isinstance(amount, int) or amount <= 0:
        raise MalformedProviderEvent("A refunded charge names its amount.", {"charge": charge.get("id")})
    return clawbacks.refund(
        ports.ledger,
        payment_intent=intent,
        charge_id=str(charge.get("id")),
        event_key=event_key,
        amount_refunded=int(charge.get("amount_refunded") or 0),
        amount=amount,
    )


def _dispute(event_type: str) -> Callable[[StripePorts, Mapping[str, Any]], str]:
    """The handler of one charge.dispute.* event type: every one carries the dispute as it is now."""

    def handle(ports: StripePorts, dispute: Mapping[str, Any]) -> str:
        intent = _id(dispute.get("payment_intent"))
        if not intent:
            return "ignored"
        return clawbacks.dispute(
            ports.ledger,
            payment_intent=intent,
            charge_id=str(_id(dispute.get("charge"))),
            event_type=event_type,
            dispute=dispute,
        )

    return handle


def _id(value: Any) -> str | None:
    """An id whether Stripe sent it bare or expanded into an object (MalformedProviderEvent if not an id)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return stripe_id(value) if value else None


_HANDLERS: dict[str, Callable[[StripePorts, Mapping[str, Any]], str]] = {
    "checkout.session.completed": _session_completed,
    "checkout.session.async_payment_succeeded": _async_succeeded,
    "checkout.session.async_payment_failed": _async_failed,
    "payment_intent.succeeded": _intent_succeeded,
    "payment_intent.payment_failed": _intent_failed,
    "charge.refunded": _charge_refunded,
    **{kind: _dispute(kind) for kind in DISPUTE_EVENTS},
}
