"""Stripe Billing: subscription events set an account's plan, billing anchor and cancellation; a paid subscription
invoice refreshes the account's allowance for its period at once (the hourly refresh stays as the backstop, and
the two share the guard `refresh:<period>`, so a period is granted exactly once either way).

The account is the one its Stripe customer is linked to (support links it, or a checkout did). A subscription
whose customer is not linked yet names its account in its metadata (`account_id`): the customer is linked to that
account, and the account is created when it does not exist (plan from the price, anchor from the subscription,
`home_region` from the metadata, default US). Our rule, so a SaaS can let Stripe Billing create its accounts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from smscredits.domain.catalog import PLANS
from smscredits.domain.errors import AccountExists, MalformedProviderEvent, NotFound
from smscredits.domain.orders import stripe_id
from smscredits.domain.subscriptions import Subscription
from smscredits.observability import count, logger
from smscredits.services.accounts import create_account
from smscredits.services.purchases import remember_customer
from smscredits.services.refresh import refresh_account

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import CustomerDirectory, Ledger

SUBSCRIPTION_EVENTS = frozenset(
    {"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"}
)
INVOICE_PAID = "invoice.paid"

HANDLED = SUBSCRIPTION_EVENTS | {INVOICE_PAID}
# The invoices of a subscription's own periods (not a proration or a one-off invoice).
CYCLE_REASONS = frozenset({"subscription_cycle", "subscription_create"})
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_HOME_REGION = "US"
ACTOR = "stripe-billing"


class BillingPorts(NamedTuple):
    ledger: Ledger
    customers: CustomerDirectory
    plan_prices: Mapping[str, str]


def handle(ports: BillingPorts, event: Mapping[str, Any]) -> str:
    """One subscription or invoice event; returns what happened."""
    kind = str(event.get("type", ""))
    obj: Mapping[str, Any] = (event.get("data") or {}).get("object") or {}
    if kind == INVOICE_PAID:
        return _invoice_paid(ports, obj)
    event_at = event.get("created")
    if not isinstance(event_at, int):
        raise MalformedProviderEvent("A subscription event needs its `created` time.", {"field": "created"})
    subscription = read_subscription(obj, event_at, ports.plan_prices, deleted=kind.endswith(".deleted"))
    if subscription.plan is None:
        # Never guessed: the state is kept (status, anchor, cancellation) with the plan left as it is.
        logger.error(
            "subscription price is not in PLAN_PRICES",
            extra={"subscription": subscription.subscription_id, "price": subscription.price_id},
        )
        count("UnknownPlanPrice")
    account_id = _account_of(ports, subscription, _metadata(obj))
    if account_id is None:
        logger.warning("subscription of an unknown customer", extra={"customer": subscription.customer_id})
        count("SubscriptionUnmatched")
        return "unknown_customer"
    outcome = ports.ledger.sync_subscription(account_id, subscription)
    logger.info("subscription synced", extra={"account_id": account_id, **outcome})
    return str(outcome["outcome"])


def read_subscription(
    obj: Mapping[str, Any], event_at: int, plan_prices: Mapping[str, str], *, deleted: bool
) -> Subscription:
    """The state a subscription object describes (MalformedProviderEvent when a field we need is missing)."""
    items = ((obj.get("items") or {}).get("data")) or []
    first: Mapping[str, Any] = items[0] if items else {}
    price = first.get("price")
    price_id = _id(price) if price else None
    plan = plan_prices.get(price_id or "")
    # Since API version 2025-03-31 the period is on the subscription's items; before it, on the subscription.
    period_end = first.get("current_period_end", obj.get("current_period_end"))
    anchor, created = obj.get("billing_cycle_anchor"), obj.get("created")
    if not all(isinstance(value, int) for value in (period_end, anchor, created)):
        raise MalformedProviderEvent(
            "The subscription lacks billing_cycle_anchor, created or current_period_end.",
            {"subscription": obj.get("id")},
        )
    status = "canceled" if deleted else str(obj.get("status") or "")
    ends = deleted or status == "canceled" or obj.get("cancel_at_period_end") is True
    return Subscription(
        subscription_id=stripe_id(obj.get("id")),
        customer_id=stripe_id(_id(obj.get("customer"))),
        status=status,
        price_id=price_id,
        plan=plan if plan in PLANS else None,
        anchor=_day(anchor),
        period_end=_day(period_end),
        ends_at=_day(period_end) if ends else None,
        created=int(created),  # type: ignore[arg-type]
        event_at=event_at,
    )


def _account_of(ports: BillingPorts, subscription: Subscription, metadata: Mapping[str, Any]) -> str | None:
    """The customer's account; else the one the metadata names (linked now, created when new)."""
    linked = ports.customers.account_for(subscription.customer_id)
    if linked is not None:
        return linked
    named = metadata.get("account_id")
    if not isinstance(named, str) or not ACCOUNT_ID.fullmatch(named):
        return None
    try:
        ports.ledger.get_account(named)
    except NotFound:
        if subscription.plan is None or not subscription.in_force():
            return None  # nothing to create an account with
        try:
            create_account(
                ports.ledger,
                account_id=named,
                plan=subscription.plan,
                billing_anchor=subscription.anchor,
                home_region=str(metadata.get("home_region") or DEFAULT_HOME_REGION),
                created_at=None,
                smart_encoding=False,
                actor=ACTOR,
            )
            count("AccountsCreatedBySubscription")
        except AccountExists:
            pass  # a concurrent delivery created it
    linked = ports.customers.link(subscription.customer_id, named)
    if linked == named:
        # Checkout, card setup and auto-recharge then use the SaaS's customer: no second customer in Stripe.
        remember_customer(ports.ledger, named, subscription.customer_id, None)
    return linked


def _invoice_paid(ports: BillingPorts, invoice: Mapping[str, Any]) -> str:
    if invoice.get("billing_reason") not in CYCLE_REASONS:
        return "ignored"
    customer = _id(invoice.get("customer"))
    account_id = ports.customers.account_for(customer) if customer else None
    if account_id is None:
        # The hourly refresh grants the period anyway; an account created by its subscription got its first
        # allowance when it was created.
        logger.warning("paid invoice of an unknown customer", extra={"customer": customer})
        return "unknown_customer"
    lines = ((invoice.get("lines") or {}).get("data")) or []
    period = (lines[0].get("period") or {}) if lines else {}
    start = period.get("start", invoice.get("period_end"))
    if not isinstance(start, int):
        raise MalformedProviderEvent("The invoice names no period.", {"invoice": invoice.get("id")})
    result = refresh_account(ports.ledger, account_id, datetime.fromtimestamp(start, UTC))
    return "refreshed" if result.refreshed else "already_refreshed"


def _day(timestamp: Any) -> Any:
    return datetime.fromtimestamp(int(timestamp), UTC).date()


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}
