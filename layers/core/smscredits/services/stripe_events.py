"""What each verified Stripe event does to the ledger; every outcome is idempotent per business key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from smscredits.adapters.ledger_store import LedgerStore
from smscredits.observability import logger
from smscredits.services import recharge
from smscredits.services.ports import Payments
from smscredits.services.purchases import claw_back, grant_purchase, paid_from, remember_customer


def handle_event(store: LedgerStore, payments: Callable[[], Payments], event: Mapping[str, Any]) -> str:
    """Apply one event; returns what happened (for the log and the answer). Unknown types change nothing."""
    kind = str(event.get("type", ""))
    obj: Mapping[str, Any] = (event.get("data") or {}).get("object") or {}
    handler = _HANDLERS.get(kind)
    if handler is None:
        return "ignored"
    outcome = handler(store, payments, obj)
    logger.info("stripe event", extra={"event_id": event.get("id"), "type": kind, "outcome": outcome})
    return outcome


def _session_completed(
    store: LedgerStore, payments: Callable[[], Payments], session: Mapping[str, Any]
) -> str:
    if session.get("payment_status") != "paid":
        return "awaiting_payment"  # a delayed method: async_payment_succeeded grants later
    outcome = _grant_session(store, session)
    metadata = session.get("metadata") or {}
    intent, customer = session.get("payment_intent"), session.get("customer")
    if outcome != "amount_mismatch" and metadata.get("save_card") == "true" and intent and customer:
        # The event carries no payment method: ask Stripe which card paid, so auto-recharge can use it.
        method = payments().payment_method_of(str(intent))
        if method:
            remember_customer(store, str(metadata["account_id"]), str(customer), method)
    return outcome


def _async_succeeded(store: LedgerStore, _: Callable[[], Payments], session: Mapping[str, Any]) -> str:
    return _grant_session(store, session)


def _async_failed(_: LedgerStore, __: Callable[[], Payments], session: Mapping[str, Any]) -> str:
    logger.warning("checkout payment failed", extra={"session_id": session.get("id")})
    return "payment_failed"


def _grant_session(store: LedgerStore, session: Mapping[str, Any]) -> str:
    paid = paid_from(
        session.get("metadata") or {},
        session.get("amount_total"),
        session.get("currency"),
        payment_intent=_id(session.get("payment_intent")),
        session_id=session.get("id"),
        customer=_id(session.get("customer")),
    )
    if paid is None:
        return "amount_mismatch"
    applied = grant_purchase(store, paid, source="checkout")
    if applied:
        recharge.publish(
            "pack.purchased", {"account_id": paid.account_id, "region": paid.region, "credits": paid.credits}
        )
    return "granted" if applied else "duplicate"


def _intent_succeeded(store: LedgerStore, _: Callable[[], Payments], intent: Mapping[str, Any]) -> str:
    metadata = intent.get("metadata") or {}
    if not metadata.get("account_id"):
        return "ignored"  # not one of our packs
    if metadata.get("kind") == "recharge":
        return recharge.settle_success(store, intent, source="webhook")
    paid = paid_from(
        metadata,
        intent.get("amount_received", intent.get("amount")),
        intent.get("currency"),
        payment_intent=intent.get("id"),
        customer=_id(intent.get("customer")),
    )
    if paid is None:
        return "amount_mismatch"
    applied = grant_purchase(store, paid, source="payment_intent")
    if applied:  # the pack's first event (checkout.session.completed may come later or never)
        recharge.publish(
            "pack.purchased", {"account_id": paid.account_id, "region": paid.region, "credits": paid.credits}
        )
    method, customer = _id(intent.get("payment_method")), _id(intent.get("customer"))
    if intent.get("setup_future_usage") == "off_session" and method and customer:
        remember_customer(store, paid.account_id, customer, method)
    return "granted" if applied else "duplicate"


def _intent_failed(store: LedgerStore, _: Callable[[], Payments], intent: Mapping[str, Any]) -> str:
    return recharge.failed_intent(store, intent)


def _charge_refunded(store: LedgerStore, _: Callable[[], Payments], charge: Mapping[str, Any]) -> str:
    intent = _id(charge.get("payment_intent"))
    if not intent:
        return "ignored"
    refunds = ((charge.get("refunds") or {}).get("data")) or []
    # Stripe stopped embedding refunds in charges; the cumulative amount names this state just as well.
    event_key = str(refunds[0]["id"]) if refunds else f"refunded-{charge.get('amount_refunded')}"
    return claw_back(
        store,
        payment_intent=intent,
        charge_id=str(charge.get("id")),
        event_key=event_key,
        refunded_cents=int(charge.get("amount_refunded") or 0),
    )


def _dispute_created(store: LedgerStore, _: Callable[[], Payments], dispute: Mapping[str, Any]) -> str:
    intent = _id(dispute.get("payment_intent"))
    if not intent:
        return "ignored"
    return claw_back(
        store,
        payment_intent=intent,
        charge_id=str(_id(dispute.get("charge"))),
        event_key=str(dispute.get("id")),
        disputed=True,
        account_changes=recharge.pause_for_dispute,
    )


def _id(value: Any) -> str | None:
    """An id whether Stripe sent it bare or expanded into an object."""
    if isinstance(value, Mapping):
        return str(value.get("id")) if value.get("id") else None
    return str(value) if value else None


_HANDLERS: dict[str, Callable[[LedgerStore, Callable[[], Payments], Mapping[str, Any]], str]] = {
    "checkout.session.completed": _session_completed,
    "checkout.session.async_payment_succeeded": _async_succeeded,
    "checkout.session.async_payment_failed": _async_failed,
    "payment_intent.succeeded": _intent_succeeded,
    "payment_intent.payment_failed": _intent_failed,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
}
