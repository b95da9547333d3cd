"""Orders: every payment this service asks Stripe for (a Checkout Session, an auto-recharge) is recorded
before Stripe is asked, and a confirmed payment is granted only against its order, on the order's terms.

Stripe metadata is not proof: a Stripe account is often shared by several integrations, so an event's
metadata only points at an order (`order_id`). What is granted (account, region, packs) is what the order
recorded, and the payment must match it: the Checkout Session or PaymentIntent id, the amount and currency,
the customer. Anything else that claims to be ours is recorded as an unmatched payment, answered 2xx,
counted (`UnmatchedPayment`) and alarmed — never granted.

The order is written before Stripe is asked, under our own deterministic id (a hash of the account and the
caller's Idempotency-Key; the recharge id for auto-recharge), so no crash can leave a payment without its
order. A Checkout order gets its session id when Stripe answers; a session whose id the order never
recorded was never shown to anyone (the answer that carries its URL is sent after the record), so it is
unmatched. The PaymentIntent id is bound to the order by the grant, in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from smscredits.adapters.dynamo import from_item, to_item, to_value
from smscredits.adapters.ledger_store import LedgerStore, iso
from smscredits.domain.catalog import PACK_CREDITS, pack_price_cents
from smscredits.domain.errors import IdempotencyKeyReused, MalformedProviderEvent
from smscredits.observability import count, logger

CURRENCY = "usd"
ORDER_SK = "ORDER"
UNMATCHED_SK = "UNMATCHED"
OrderKind = Literal["checkout", "recharge"]
MAX_ID = 255  # Stripe's ids are short; ours are at most ~80 characters (well under DynamoDB's key limit)
MAX_KEPT = 10_000  # characters of an unmatched payment's Stripe object kept for support
# The metadata keys this service puts on its sessions and PaymentIntents. An event carrying none of them is
# another integration's (the Stripe account may be shared) and is ignored; one carrying any is ours or
# pretends to be, so it must match an order.
OUR_METADATA = ("order_id", "account_id", "kind", "recharge_id")


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    kind: OrderKind
    account_id: str
    region: str
    packs: int
    amount_cents: int  # what the payment must be, with `currency` (issue 16 checks price changes against it)
    currency: str
    customer_id: str
    status: str  # creating (Stripe not answered yet) | open | paid
    session_id: str | None = None
    checkout_url: str | None = None
    payment_intent: str | None = None
    save_card: bool = False
    request_hash: str | None = None
    token: str | None = None  # the recharge claim that wrote it
    payment_method: str | None = None  # the saved card a recharge charges

    @property
    def credits(self) -> int:
        return self.packs * PACK_CREDITS


class Unmatched(Exception):
    """A payment Stripe confirmed that is not one of our orders, or not as the order recorded it."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


def order_key(order_id: str) -> dict[str, dict[str, str]]:
    return {"pk": to_value(f"ORDER#{order_id}"), "sk": to_value(ORDER_SK)}


def order_item(order: Order, created_at: str) -> dict[str, Any]:
    return to_item(
        {
            "pk": f"ORDER#{order.order_id}",
            "sk": ORDER_SK,
            "type": "order",
            "order_id": order.order_id,
            "kind": order.kind,
            "account_id": order.account_id,
            "region": order.region,
            "packs": order.packs,
            "credits": order.credits,
            "amount_cents": order.amount_cents,
            "currency": order.currency,
            "customer_id": order.customer_id,
            "status": order.status,
            "save_card": order.save_card,
            "request_hash": order.request_hash,
            "token": order.token,
            "payment_method": order.payment_method,
            "created_at": created_at,
        }
    )


def order_from_item(raw: Mapping[str, Any]) -> Order:
    return Order(
        order_id=raw["order_id"],
        kind=raw["kind"],
        account_id=raw["account_id"],
        region=raw["region"],
        packs=int(raw["packs"]),
        amount_cents=int(raw["amount_cents"]),
        currency=raw["currency"],
        customer_id=raw["customer_id"],
        status=raw["status"],
        session_id=raw.get("session_id"),
        checkout_url=raw.get("checkout_url"),
        payment_intent=raw.get("payment_intent"),
        save_card=bool(raw.get("save_card", False)),
        request_hash=raw.get("request_hash"),
        token=raw.get("token"),
        payment_method=raw.get("payment_method"),
    )


def find_order(store: LedgerStore, pointer: Any) -> Order | None:
    """The order an event's metadata points at (anything that is not one of our ids points at none)."""
    if not isinstance(pointer, str) or not 0 < len(pointer) <= MAX_ID:
        return None
    return get_order(store, pointer)


def get_order(store: LedgerStore, order_id: str) -> Order | None:
    found = store.client.get_item(TableName=store.table, Key=order_key(order_id), ConsistentRead=True)
    return order_from_item(from_item(found["Item"])) if "Item" in found else None


# ---- checkout ---------------------------------------------------------------------------------------


def checkout_order_id(account_id: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(f"{account_id}\n{idempotency_key}".encode()).hexdigest()
    return f"chk_{digest[:26]}"


def open_checkout(
    store: LedgerStore,
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
    request = json.dumps({"region": region, "packs": packs}, sort_keys=True)
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
        request_hash=hashlib.sha256(request.encode()).hexdigest(),
    )
    try:
        store.write_item(
            "put_item",
            TableName=store.table,
            Item=order_item(order, iso(store.clock())),
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        recorded = order_from_item(from_item(error.response["Item"]))
        if recorded.request_hash != order.request_hash:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different purchase.",
                {"header": "Idempotency-Key"},
            ) from error
        return recorded
    return order


def record_session(store: LedgerStore, order: Order, session_id: str, url: str) -> Order:
    """Note the session Stripe created for the order (before its URL is shown to anyone)."""
    try:
        store.write_item(
            "update_item",
            TableName=store.table,
            Key=order_key(order.order_id),
            UpdateExpression="SET session_id = :session, checkout_url = :url, #status = :open",
            ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(session_id) OR session_id = :session)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":session": to_value(session_id),
                ":url": to_value(url),
                ":open": to_value("open"),
            },
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        # Stripe made another session for the same key (its idempotency keys expire after 24 hours): the
        # order keeps the first one, which is the one the caller was answered.
        recorded = get_order(store, order.order_id)
        if recorded is None or recorded.session_id is None:
            raise  # the order we just read is gone: a bug, never the caller's doing
        return recorded
    return Order(**{**_fields(order), "session_id": session_id, "checkout_url": url, "status": "open"})


def _fields(order: Order) -> dict[str, Any]:
    return {name: getattr(order, name) for name in Order.__slots__}


# ---- recharge ---------------------------------------------------------------------------------------


def recharge_order_put(
    store: LedgerStore,
    *,
    recharge_id: str,
    account_id: str,
    region: str,
    packs: int,
    amount_cents: int,
    customer_id: str,
    payment_method: str,
    token: str,
) -> dict[str, Any]:
    """The Put of a recharge's order, written in the claim's transaction (so with the cap's reservation)."""
    order = Order(
        order_id=recharge_id,
        kind="recharge",
        account_id=account_id,
        region=region,
        packs=packs,
        amount_cents=amount_cents,
        currency=CURRENCY,
        customer_id=customer_id,
        status="open",
        token=token,
        payment_method=payment_method,
    )
    return {
        "Put": {
            "TableName": store.table,
            "Item": order_item(order, iso(store.clock())),
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


# ---- matching a payment -----------------------------------------------------------------------------


def stripe_id(value: Any) -> str:
    """A Stripe object's id, or MalformedProviderEvent: every object Stripe sends has a short string id."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise MalformedProviderEvent("The event's object has no usable id.", {"id": "invalid"})
    return value


def claims_to_be_ours(metadata: Mapping[str, Any]) -> bool:
    return any(metadata.get(key) for key in OUR_METADATA)


def match(
    store: LedgerStore,
    *,
    kind: OrderKind,
    metadata: Mapping[str, Any],
    amount: Any,
    currency: Any,
    customer: str | None,
    session_id: str | None = None,
    payment_intent: str | None = None,
) -> Order:
    """The order this confirmed payment pays for, or Unmatched (with the reason) when there is none or the
    payment differs from it in any way. `session_id` is given for Checkout Session events."""
    order_id = metadata.get("order_id")
    order = find_order(store, order_id)
    if order is None or order.kind != kind:
        raise Unmatched("unknown_order", order_id=order_id)
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
    if amount != order.amount_cents or str(currency).lower() != order.currency:
        raise Unmatched(
            "amount", order_id=order.order_id, expected=order.amount_cents, expected_currency=order.currency
        )
    if customer != order.customer_id:
        raise Unmatched("customer", order_id=order.order_id)
    return order


def record_unmatched(
    store: LedgerStore, *, object_id: str, event_type: str, unmatched: Unmatched, payment: Mapping[str, Any]
) -> str:
    """Keep a payment that matches no order (once per Stripe object id) for support to resolve, and alarm."""
    item = {
        "pk": f"UNMATCHED#{object_id}",
        "sk": UNMATCHED_SK,
        "type": "unmatched_payment",
        "object_id": object_id,
        "event_type": event_type,
        "reason": unmatched.reason,
        "details": json.dumps(unmatched.details, sort_keys=True, default=str)[:MAX_KEPT],
        "payment": json.dumps(payment, sort_keys=True, default=str)[:MAX_KEPT],
        "created_at": iso(store.clock()),
    }
    try:
        store.write_item(
            "put_item",
            TableName=store.table,
            Item=to_item(item),
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        logger.info(
            "unmatched payment seen again", extra={"object_id": object_id, "reason": unmatched.reason}
        )
        return "unmatched"
    count("UnmatchedPayment")
    logger.error(
        "ALERT stripe payment matches no order; nothing granted",
        extra={
            "object_id": object_id,
            "event_type": event_type,
            "reason": unmatched.reason,
            **unmatched.details,
        },
    )
    return "unmatched"


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
