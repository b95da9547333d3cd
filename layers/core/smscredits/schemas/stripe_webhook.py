"""Stripe webhook payloads at the boundary: the envelope and the fields our handlers read, typed as Stripe
documents them (docs.stripe.com/api/events/object). A validly signed payload that does not parse is
MalformedProviderEvent (400): a bug of ours further on must stay a 500, never look like Stripe's mistake."""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from smscredits.domain.clawbacks import DISPUTE_EVENTS
from smscredits.domain.errors import MalformedProviderEvent
from smscredits.schemas.decoding import parse_json


class StripeModel(BaseModel):
    """Stripe adds fields in every API version: keep what we do not read, check the types of what we do."""

    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)


class Expanded(StripeModel):
    """A related object Stripe expanded in place of its id."""

    id: StrictStr | None = None


IdOrObject = StrictStr | Expanded
Metadata = dict[StrictStr, StrictStr]  # Stripe's metadata values are always strings


class CheckoutSession(StripeModel):
    id: StrictStr | None = None
    mode: StrictStr | None = None
    setup_intent: IdOrObject | None = None
    payment_status: StrictStr | None = None
    metadata: Metadata | None = None
    payment_intent: IdOrObject | None = None
    customer: IdOrObject | None = None
    amount_total: StrictInt | None = None
    currency: StrictStr | None = None


class PaymentError(StripeModel):
    code: StrictStr | None = None
    decline_code: StrictStr | None = None
    message: StrictStr | None = None


class PaymentIntent(StripeModel):
    id: StrictStr | None = None
    metadata: Metadata | None = None
    amount: StrictInt | None = None
    amount_received: StrictInt | None = None
    currency: StrictStr | None = None
    customer: IdOrObject | None = None
    payment_method: IdOrObject | None = None
    setup_future_usage: StrictStr | None = None
    last_payment_error: PaymentError | None = None


class Refund(StripeModel):
    id: StrictStr


class Refunds(StripeModel):
    data: list[Refund] = []


class Charge(StripeModel):
    id: StrictStr | None = None
    amount: StrictInt | None = None
    payment_intent: IdOrObject | None = None
    amount_refunded: StrictInt | None = None
    refunds: Refunds | None = None


class BalanceTransaction(StripeModel):
    amount: StrictInt  # negative: funds withdrawn; positive: reinstated


class Dispute(StripeModel):
    id: StrictStr | None = None
    payment_intent: IdOrObject | None = None
    charge: IdOrObject | None = None
    amount: StrictInt | None = None
    status: StrictStr | None = None
    balance_transactions: list[BalanceTransaction] = []


class Price(StripeModel):
    id: StrictStr | None = None


class SubscriptionItem(StripeModel):
    price: StrictStr | Price | None = None
    current_period_end: StrictInt | None = None


class SubscriptionItems(StripeModel):
    data: list[SubscriptionItem] = []


class Subscription(StripeModel):
    id: StrictStr
    customer: IdOrObject
    status: StrictStr | None = None
    metadata: Metadata | None = None
    items: SubscriptionItems | None = None
    billing_cycle_anchor: StrictInt
    created: StrictInt
    cancel_at_period_end: bool | None = None
    current_period_end: StrictInt | None = None


class InvoicePeriod(StripeModel):
    start: StrictInt
    end: StrictInt


class InvoiceLine(StripeModel):
    period: InvoicePeriod | None = None


class InvoiceLines(StripeModel):
    data: list[InvoiceLine] = []


class Invoice(StripeModel):
    id: StrictStr | None = None
    customer: IdOrObject | None = None
    billing_reason: StrictStr | None = None
    lines: InvoiceLines | None = None


class EventData(StripeModel):
    object: dict[StrictStr, Any]


class StripeEvent(StripeModel):
    """What Stripe POSTs to /webhooks/stripe (signed with Stripe-Signature over the raw body)."""

    id: StrictStr | None = None
    type: StrictStr
    data: EventData


# The object each handled event type carries; other types are acknowledged and change nothing.
OBJECTS: dict[str, type[StripeModel]] = {
    "checkout.session.completed": CheckoutSession,
    "checkout.session.async_payment_succeeded": CheckoutSession,
    "checkout.session.async_payment_failed": CheckoutSession,
    "payment_intent.succeeded": PaymentIntent,
    "payment_intent.payment_failed": PaymentIntent,
    "charge.refunded": Charge,
    **dict.fromkeys(DISPUTE_EVENTS, Dispute),
    "customer.subscription.created": Subscription,
    "customer.subscription.updated": Subscription,
    "customer.subscription.deleted": Subscription,
    "invoice.paid": Invoice,
}


def parse_event(payload: str) -> dict[str, Any]:
    """The event as plain data, checked against the shapes above; MalformedProviderEvent otherwise."""
    value = parse_json(payload, refuse=MalformedProviderEvent)
    try:
        event = StripeEvent.model_validate(value)
        shape = OBJECTS.get(event.type)
        if shape is not None:
            shape.model_validate(event.data.object)
    except ValidationError as error:
        problems = [
            {"location": ".".join(str(p) for p in item["loc"]), "problem": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False, include_input=False, include_context=False)[:20]
        ]
        raise MalformedProviderEvent(
            "The event is not shaped as Stripe documents it.", {"errors": problems}
        ) from error
    # Strict validation coerces nothing, so the checked data is exactly what Stripe sent.
    return cast(dict[str, Any], value)
