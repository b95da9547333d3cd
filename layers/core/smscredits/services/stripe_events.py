"""What each verified Stripe event does to the ledger; every outcome is idempotent per business key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from smscredits.domain.orders import Order, Paid, Unmatched, claims_to_be_ours, payment_summary, stripe_id
from smscredits.observability import logger
from smscredits.services import card_setup, orders, recharge, subscriptions
from smscredits.services.clawbacks import claw_back
from smscredits.services.purchases import remember_customer

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import EventPublisher, Ledger, Payments


class StripePorts(NamedTuple):
    """What the Stripe events need: the ledger, Stripe itself and where events go."""

    ledger: Ledger
    payments: Payments
    events: EventPublisher
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
    outcome, order = _grant_session(ports, session, "checkout.session.completed")
    intent = _id(session.get("payment_intent"))
    if order is not None and order.save_card and intent:
        # The event carries no payment method: ask Stripe which card paid, so auto-recharge can use it.
        method = ports.payments.payment_method_of(intent)
        if method:
            remember_customer(ports.ledger, order.account_id, order.customer_id, method)
    return outcome


def _async_succeeded(ports: StripePorts, session: Mapping[str, Any]) -> str:
    return _grant_session(ports, session, "checkout.session.async_payment_succeeded")[0]


def _async_failed(_: StripePorts, session: Mapping[str, Any]) -> str:
    logger.warning("checkout payment failed", extra={"session_id": session.get("id")})
    return "payment_failed"


def _grant_session(
    ports: StripePorts, session: Mapping[str, Any], event_type: str
) -> tuple[str, Order | None]:
    """Grant a paid session's order; (outcome, the order when the session is one of ours as recorded)."""
    metadata = _metadata(session)
    if not claims_to_be_ours(metadata):
        return "ignored", None  # another integration's session on a shared Stripe account
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
        applied = ports.ledger.grant_purchase(Paid(order, intent, session_id), source="checkout")
    except Unmatched as unmatched:
        return _unmatched(ports, session_id, event_type, unmatched, session), None
    if applied:
        _announce(ports, order)
    return ("granted" if applied else "duplicate"), order


def _intent_succeeded(ports: StripePorts, intent: Mapping[str, Any]) -> str:
    metadata = _metadata(intent)
    if not claims_to_be_ours(metadata):
        return "ignored"  # another integration's payment on a shared Stripe account
    if metadata.get("kind") == "recharge":
        return recharge.settle_success(ports.ledger, ports.events, intent, source="webhook")
    intent_id = stripe_id(intent.get("id"))
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
        applied = ports.ledger.grant_purchase(Paid(order, intent_id), source="payment_intent")
    except Unmatched as unmatched:
        return _unmatched(ports, intent_id, "payment_intent.succeeded", unmatched, intent)
    if applied:  # the pack's first event (checkout.session.completed may come later or never)
        _announce(ports, order)
    method = _id(intent.get("payment_method"))
    if order.save_card and intent.get("setup_future_usage") == "off_session" and method:
        remember_customer(ports.ledger, order.account_id, order.customer_id, method)
    return "granted" if applied else "duplicate"


def _announce(ports: StripePorts, order: Order) -> None:
    recharge.publish(
        ports.events,
        "pack.purchased",
        {"account_id": order.account_id, "region": order.region, "credits": order.credits},
    )


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
    return recharge.settle_failed_intent(ports.ledger, ports.events, intent)


def _charge_refunded(ports: StripePorts, charge: Mapping[str, Any]) -> str:
    intent = _id(charge.get("payment_intent"))
    if not intent:
        return "ignored"
    refunds = ((charge.get("refunds") or {}).get("data")) or []
    # Stripe stopped embedding refunds in charges; the cumulative amount names this state just as well.
    event_key = str(refunds[0]["id"]) if refunds else f"refunded-{charge.get('amount_refunded')}"
    return claw_back(
        ports.ledger,
        payment_intent=intent,
        charge_id=str(charge.get("id")),
        event_key=event_key,
        refunded_cents=int(charge.get("amount_refunded") or 0),
    )


def _dispute_created(ports: StripePorts, dispute: Mapping[str, Any]) -> str:
    intent = _id(dispute.get("payment_intent"))
    if not intent:
        return "ignored"
    return claw_back(
        ports.ledger,
        payment_intent=intent,
        charge_id=str(_id(dispute.get("charge"))),
        event_key=str(dispute.get("id")),
        disputed=True,
    )


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
    "charge.dispute.created": _dispute_created,
}
