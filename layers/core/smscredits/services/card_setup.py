"""Putting a card on file without buying: a Stripe Checkout Session in setup mode for the account's customer, and
its completion (checkout.session.completed, mode setup), which saves the SetupIntent's card for auto-recharge."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from smscredits.domain import auto_recharge as AR
from smscredits.domain.orders import CURRENCY, stripe_id
from smscredits.observability import count, logger
from smscredits.services.purchases import MAX_IDEMPOTENCY_KEY, remember_customer

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger, Payments

SETUP_KIND = "card_setup"


def start_setup(
    ledger: Ledger, payments: Payments, *, account_id: str, request_key: str, public_base_url: str
) -> dict[str, str]:
    """A setup session's URL and id. `request_key` names the request: the same key answers the same session (Stripe
    replays an idempotency key's first answer for 24 hours)."""
    auto = ledger.get_account(account_id).auto_recharge
    customer = auto.customer_id or payments.create_customer(account_id)
    if not auto.customer_id:
        remember_customer(ledger, account_id, customer, None)
    metadata = {"account_id": account_id, "kind": SETUP_KIND}
    params = {
        "mode": "setup",
        "currency": CURRENCY,
        "customer": customer,
        "client_reference_id": account_id,
        "payment_method_types": ["card"],
        "metadata": metadata,
        "setup_intent_data": {"metadata": metadata},
        "success_url": f"{public_base_url}/dashboard?card=saved",
        "cancel_url": f"{public_base_url}/dashboard?card=cancel",
    }
    scoped = f"card-setup:{account_id}:{request_key}"
    if len(scoped) > MAX_IDEMPOTENCY_KEY:
        scoped = "card-setup:" + hashlib.sha256(scoped.encode()).hexdigest()
    session_id, url = payments.create_checkout_session(params, scoped)
    return {"setup_url": url, "session_id": session_id}


def setup_completed(ledger: Ledger, payments: Payments, session: Mapping[str, Any]) -> str:
    """Save the card of a completed setup session of ours, on the account whose customer it was made for."""
    metadata = session.get("metadata") or {}
    account_id = metadata.get("account_id")
    if metadata.get("kind") != SETUP_KIND or not isinstance(account_id, str):
        return "ignored"  # another integration's setup session on a shared Stripe account
    customer = _id(session.get("customer"))
    intent = _id(session.get("setup_intent"))
    auto = ledger.get_account(account_id).auto_recharge
    if customer is None or intent is None or customer != auto.customer_id:
        logger.warning(
            "setup session does not match the account's customer", extra={"account_id": account_id}
        )
        count("CardSetupUnmatched")
        return "unmatched"
    method = payments.setup_payment_method(intent)
    if method is None:
        return "no_card"
    ledger.update_auto_recharge(
        account_id,
        lambda state: AR.with_card(state, customer, method),
        op_id=f"card:{stripe_id(session.get('id'))}",
    )
    return "card_saved"


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None
