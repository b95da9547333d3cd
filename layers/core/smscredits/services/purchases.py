"""Packs: the price table and Checkout for 1-100 packs of one region (the grant is the ledger's, on payment)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from smscredits.domain import auto_recharge as AR
from smscredits.domain.catalog import MAX_PACKS_PER_PURCHASE, PACK_CREDITS, REGIONS
from smscredits.domain.errors import LegacyAccount, NotFound
from smscredits.domain.orders import CURRENCY, Order
from smscredits.services import orders

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger, Payments

MAX_IDEMPOTENCY_KEY = 255


def price_table() -> dict[str, Any]:
    return {
        "currency": CURRENCY,
        "credits_per_pack": PACK_CREDITS,
        "max_quantity": MAX_PACKS_PER_PURCHASE,
        "packs": [
            {
                "region": region.code,
                "label": region.label,
                "name": region.name,
                "credits": PACK_CREDITS,
                "price_cents": region.pack_price_cents,
            }
            for region in REGIONS.values()
        ],
    }


def create_checkout(
    ledger: Ledger,
    payments: Payments,
    *,
    account_id: str,
    idempotency_key: str,
    region: str,
    quantity: int,
    public_base_url: str,
) -> dict[str, str]:
    """A Stripe Checkout Session for `quantity` packs of `region`, recorded as an order before Stripe is asked
    (the only payment a pack is granted for). The same key answers the same session without asking again."""
    account = ledger.get_account(account_id)
    if account.credit_model == "legacy":
        raise LegacyAccount(
            "This account still uses the legacy credit model and cannot buy region packs. Ask support to "
            "migrate it (POST /v1/admin/accounts/{id}/migration); its legacy credits become purchased credits.",
            {"account_id": account_id, "migrate": f"POST /v1/admin/accounts/{account_id}/migration"},
        )
    auto = account.auto_recharge
    customer = auto.customer_id or payments.create_customer(account_id)
    order = orders.open_checkout(
        ledger,
        account_id=account_id,
        idempotency_key=idempotency_key,
        region=region,
        packs=quantity,
        customer_id=customer,
        save_card=auto.enabled,  # the owner opted in to auto-recharge: keep this card
    )
    if order.session_id and order.checkout_url:
        return _answer(order)  # a replay
    # The order id is the pointer an event follows back to the order; the rest is for people reading Stripe.
    metadata = {
        "order_id": order.order_id,
        "account_id": account_id,
        "region": region,
        "packs": str(quantity),
        "kind": "checkout",
    }
    intent_data: dict[str, Any] = {"metadata": metadata}
    if order.save_card:
        intent_data["setup_future_usage"] = "off_session"
        metadata = {**metadata, "save_card": "true"}
    params = {
        "mode": "payment",
        "customer": order.customer_id,
        "client_reference_id": account_id,
        "line_items": [
            {
                "price_data": {
                    "currency": order.currency,
                    # the order's price, not today's table: a replay after a price change asks what was recorded
                    "unit_amount": order.amount_cents // order.packs,
                    "product_data": {"name": f"{PACK_CREDITS} {REGIONS[region].label} SMS credits"},
                },
                "quantity": quantity,
            }
        ],
        "metadata": metadata,
        "payment_intent_data": intent_data,
        # Adaptive Pricing (on by the Stripe account's dashboard setting unless a session says otherwise)
        # presents a converted local price; the order records USD at the pack price, and the payment must match
        # it exactly (docs.stripe.com/payments/currencies/localize-prices/adaptive-pricing).
        "adaptive_pricing": {"enabled": False},
        "success_url": f"{public_base_url}/dashboard?checkout=success",
        "cancel_url": f"{public_base_url}/dashboard?checkout=cancel",
    }
    session_id, url = payments.create_checkout_session(params, _stripe_key(account_id, idempotency_key))
    order = orders.record_session(ledger, order, session_id, url)
    if not auto.customer_id:
        remember_customer(ledger, account_id, customer, None)
    return _answer(order)


def _answer(order: Order) -> dict[str, str]:
    return {
        "checkout_url": str(order.checkout_url),
        "session_id": str(order.session_id),
        "order_id": order.order_id,
    }


def order_view(ledger: Ledger, account_id: str, order_id: str) -> dict[str, Any]:
    """One of the account's orders (a checkout or a recharge) and what became of it; 404 for any other."""
    order = orders.find_order(ledger, order_id)
    if order is None or order.account_id != account_id:
        raise NotFound("No such order.", {"order_id": order_id})
    return {
        "order_id": order.order_id,
        "kind": order.kind,
        "region": order.region,
        "packs": order.packs,
        "credits": order.credits,
        "amount_cents": order.amount_cents,
        "currency": order.currency,
        "status": order.status,
        "failure": order.failure,
        "created_at": order.created_at,
        "paid_at": order.paid_at,
    }


def _stripe_key(account_id: str, key: str) -> str:
    """Stripe's idempotency keys are per Stripe account, so ours are scoped to the caller's account."""
    scoped = f"checkout:{account_id}:{key}"
    return (
        scoped
        if len(scoped) <= MAX_IDEMPOTENCY_KEY
        else "checkout:" + hashlib.sha256(scoped.encode()).hexdigest()
    )


def remember_customer(ledger: Ledger, account_id: str, customer: str, payment_method: str | None) -> None:
    """Keep the Stripe customer (and the card a checkout saved) for the next checkout and for auto-recharge."""
    ledger.update_auto_recharge(
        account_id,
        lambda auto: AR.with_customer(auto, customer, payment_method),
        op_id=f"customer:{customer}",
    )
