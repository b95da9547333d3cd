"""Orders and payments: what this service asked Stripe for, what a confirmed payment must match to be granted,
and the record of a granted payment (what a refund or dispute claws back: domain/clawbacks.py).

Stripe metadata is not proof: a Stripe account is often shared by several integrations, so an event's
metadata only points at an order (`order_id`). What is granted (account, region, packs) is what the order
recorded, and the payment must match it: the Checkout Session or PaymentIntent id, the amount and currency,
the customer. Anything else that claims to be ours is an unmatched payment, never granted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, NamedTuple

from smscredits.domain.catalog import PACK_CREDITS
from smscredits.domain.clawbacks import NOTHING_REFUNDED, Refunds
from smscredits.domain.errors import MalformedProviderEvent

CURRENCY = "usd"
OrderKind = Literal["checkout", "recharge"]
MAX_ID = 255  # Stripe's ids are short; ours are at most ~80 characters (well under DynamoDB's key limit)
MAX_KEPT = 10_000  # characters of an unmatched payment's Stripe object kept for support
# The metadata keys this service puts on its sessions and PaymentIntents. An event carrying none of them is
# another integration's (the Stripe account may be shared) and is ignored; one carrying any is ours or
# pretends to be, so it must match an order.
OUR_METADATA = ("order_id", "account_id", "kind", "recharge_id")


class Order(NamedTuple):
    order_id: str
    kind: OrderKind
    account_id: str
    region: str
    packs: int
    amount_cents: int  # what the payment must be, with `currency` (issue 16 checks price changes against it)
    currency: str
    customer_id: str
    # creating (Stripe not answered yet) | open | paid | failed (its payment failed) | unfulfilled (paid, but
    # not as ordered: nothing granted, support resolves it)
    status: str
    session_id: str | None = None
    checkout_url: str | None = None
    payment_intent: str | None = None
    save_card: bool = False
    request_hash: str | None = None
    token: str | None = None  # the recharge claim that wrote it
    payment_method: str | None = None  # the saved card a recharge charges
    created_at: datetime | None = None
    paid_at: datetime | None = None
    failure: str | None = None  # why it is failed or unfulfilled

    @property
    def credits(self) -> int:
        return self.packs * PACK_CREDITS


class Paid(NamedTuple):
    """A payment Stripe confirmed for one of our orders: what is granted is what the order recorded."""

    order: Order
    payment_intent: str | None
    session_id: str | None = None
    receipt_url: str | None = None  # the receipt of the charge that paid (Stripe's Charge.receipt_url)

    @property
    def key(self) -> str:
        # One grant per order: its Checkout Session and its PaymentIntent (or a recharge's synchronous answer
        # and its webhook) grant under the same key.
        return f"purchase:{self.order.order_id}"


class Payment(NamedTuple):
    """A granted payment, kept by PaymentIntent id: what its refunds and disputes claw back from."""

    payment_intent: str
    account_id: str
    region: str
    packs: int
    credits: int
    amount_cents: int
    order_id: str
    session_id: str | None = None
    refunds: Refunds = NOTHING_REFUNDED
    taken_credits: int = 0  # credits actually taken back (never more than the pool held)
    created_at: datetime | None = None
    # Stripe's receipt of the charge that paid (None on payments granted before receipts were kept)
    receipt_url: str | None = None


UNFULFILLED = "amount"  # the reason of a payment for one of our orders by its customer, not of its amount


class Unmatched(Exception):
    """A payment Stripe confirmed that is not one of our orders, or not as the order recorded it."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class UnmatchedPayment(NamedTuple):
    """A confirmed payment that matches no order, kept once per Stripe object for support to resolve."""

    object_id: str
    event_type: str
    reason: str
    details: str  # JSON, at most MAX_KEPT characters
    payment: str  # JSON of the Stripe object's fields that identify it, at most MAX_KEPT characters
    created_at: datetime


def stripe_id(value: Any) -> str:
    """A Stripe object's id, or MalformedProviderEvent: every object Stripe sends has a short string id."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise MalformedProviderEvent("The event's object has no usable id.", {"id": "invalid"})
    return value


def is_order_id(pointer: Any) -> bool:
    """Whether an event's metadata pointer could be one of our order ids (else it points at none)."""
    return isinstance(pointer, str) and 0 < len(pointer) <= MAX_ID


def claims_to_be_ours(metadata: Mapping[str, Any]) -> bool:
    return any(metadata.get(key) for key in OUR_METADATA)


def check_match(
    order: Order | None,
    *,
    kind: OrderKind,
    metadata: Mapping[str, Any],
    amount: Any,
    currency: Any,
    customer: str | None,
    session_id: str | None = None,
    payment_intent: str | None = None,
) -> Order:
    """The order itself when this confirmed payment pays for it, or Unmatched (with the reason) when there is
    none or the payment differs from it in any way. `session_id` is given for Checkout Session events."""
    if order is None or order.kind != kind:
        raise Unmatched("unknown_order", order_id=metadata.get("order_id"))
    said = {"account_id": order.account_id, "region": order.region, "packs": str(order.packs), "kind": kind}
    if kind == "recharge":
        said["recharge_id"] = order.order_id
    disagreeing = sorted(
        key for key, value in said.items() if key in metadata and str(metadata[key]) != value
    )
    if disagreeing:
        raise Unmatched("metadata_disagrees", order_id=order.order_id, fields=disagreeing)
    if kind == "checkout" and (order.session_id is None or session_id not in (None, order.session_id)):
        raise Unmatched("unknown_session", order_id=order.order_id, recorded=order.session_id)
    if payment_intent and order.payment_intent not in (None, payment_intent):
        raise Unmatched(
            "paid_by_another_payment_intent", order_id=order.order_id, recorded=order.payment_intent
        )
    if customer != order.customer_id:
        raise Unmatched("customer", order_id=order.order_id)
    if amount != order.amount_cents or str(currency).lower() != order.currency:
        # Checked last: this is the order's own customer paying for it, just not what it recorded (a price
        # changed under an open session, or an async method settled differently): an unfulfilled payment.
        raise Unmatched(
            UNFULFILLED,
            order_id=order.order_id,
            expected=order.amount_cents,
            expected_currency=order.currency,
            paid=amount,
            paid_currency=currency,
        )
    return order


MAX_RECEIPT_URL = 2_048


def receipt_url_of(intent: Mapping[str, Any]) -> str | None:
    """The receipt URL of a PaymentIntent's latest charge when the charge is expanded in it (`latest_charge` is
    only an id otherwise: the receipt is then asked of Stripe). Anything but an http(s) URL of sane length
    is not a receipt to link to."""
    charge = intent.get("latest_charge")
    url = charge.get("receipt_url") if isinstance(charge, Mapping) else None
    return url if is_receipt_url(url) else None


def is_receipt_url(url: Any) -> bool:
    """An absolute http(s) URL of at most MAX_RECEIPT_URL characters (Stripe's are https; the local stand-in
    serves its receipts over plain http)."""
    return (
        isinstance(url, str) and 0 < len(url) <= MAX_RECEIPT_URL and url.startswith(("https://", "http://"))
    )


def payment_summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What an unmatched payment's record keeps of the Stripe object: enough for support to find and refund it."""
    fields = (
        "id",
        "object",
        "amount",
        "amount_received",
        "amount_total",
        "currency",
        "customer",
        "payment_intent",
        "metadata",
    )
    return {field: obj.get(field) for field in fields if field in obj}
