"""Packs: the price table, Checkout for 1-100 packs, the exactly-once grant of a paid pack and its clawback."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from smscredits.adapters.dynamo import from_item, to_item, to_value
from smscredits.adapters.ledger_store import LedgerStore, Write, iso
from smscredits.domain import ledger as L
from smscredits.domain.account import Account
from smscredits.domain.catalog import MAX_PACKS_PER_PURCHASE, PACK_CREDITS, REGIONS
from smscredits.domain.errors import Conflict, LegacyAccount, UpstreamUnavailable
from smscredits.observability import count, logger
from smscredits.services import orders
from smscredits.services.ports import Payments

MAX_IDEMPOTENCY_KEY = 255
PAYMENT_SK = "PAYMENT"


def price_table() -> dict[str, Any]:
    return {
        "currency": orders.CURRENCY,
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


# ---- checkout ---------------------------------------------------------------------------------------


def create_checkout(
    store: LedgerStore,
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
    account = store.get_account(account_id)
    if account.credit_model == "legacy":
        raise LegacyAccount(
            "This account still uses the legacy credit model and cannot buy region packs. Ask support to "
            "migrate it (POST /v1/admin/accounts/{id}/migration); its legacy credits become purchased credits.",
            {"account_id": account_id, "migrate": f"POST /v1/admin/accounts/{account_id}/migration"},
        )
    settings = account.auto_recharge
    customer = settings.get("customer_id") or payments.create_customer(account_id)
    order = orders.open_checkout(
        store,
        account_id=account_id,
        idempotency_key=idempotency_key,
        region=region,
        packs=quantity,
        customer_id=customer,
        save_card=bool(settings.get("enabled")),  # the owner opted in to auto-recharge: keep this card
    )
    if order.session_id and order.checkout_url:
        return {"checkout_url": order.checkout_url, "session_id": order.session_id}  # a replay
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
                    "unit_amount": REGIONS[region].pack_price_cents,
                    "product_data": {"name": f"{PACK_CREDITS} {REGIONS[region].label} SMS credits"},
                },
                "quantity": quantity,
            }
        ],
        "metadata": metadata,
        "payment_intent_data": intent_data,
        "success_url": f"{public_base_url}/dashboard?checkout=success",
        "cancel_url": f"{public_base_url}/dashboard?checkout=cancel",
    }
    session_id, url = payments.create_checkout_session(params, _stripe_key(account_id, idempotency_key))
    order = orders.record_session(store, order, session_id, url)
    if not settings.get("customer_id"):
        remember_customer(store, account_id, customer, None)
    return {"checkout_url": str(order.checkout_url), "session_id": str(order.session_id)}


def _stripe_key(account_id: str, key: str) -> str:
    """Stripe's idempotency keys are per Stripe account, so ours are scoped to the caller's account."""
    scoped = f"checkout:{account_id}:{key}"
    return (
        scoped
        if len(scoped) <= MAX_IDEMPOTENCY_KEY
        else "checkout:" + hashlib.sha256(scoped.encode()).hexdigest()
    )


def update_auto_recharge(
    store: LedgerStore, account_id: str, change: Callable[[dict[str, Any]], dict[str, Any]], op_id: str
) -> Account:
    """Rewrite the auto-recharge map from the current one, pinned to the balance version like every write."""

    def build(state: Account) -> Write:
        settings = change(_copy(state.auto_recharge))
        return Write(
            L.Plan(state.pools, state.held, ()), op_id, {}, account_changes={"auto_recharge": settings}
        )

    after, _ = store.apply(account_id, build, lambda item: item)
    return after


def remember_customer(store: LedgerStore, account_id: str, customer: str, payment_method: str | None) -> None:
    def change(settings: dict[str, Any]) -> dict[str, Any]:
        if settings.get("customer_id") not in (None, customer) and not payment_method:
            return settings  # another checkout stored a customer first; keep it
        settings["customer_id"] = customer
        if payment_method:
            settings["payment_method_id"] = payment_method
        return settings

    update_auto_recharge(store, account_id, change, f"customer:{customer}")


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# ---- the grant --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paid:
    """A payment Stripe confirmed for one of our orders: what is granted is what the order recorded."""

    order: orders.Order
    payment_intent: str | None
    session_id: str | None = None

    @property
    def key(self) -> str:
        # One grant per order: its Checkout Session and its PaymentIntent (or a recharge's synchronous answer
        # and its webhook) grant under the same key.
        return f"purchase:{self.order.order_id}"


def payment_key(payment_intent: str) -> dict[str, dict[str, str]]:
    return {"pk": to_value(f"PAYMENT#{payment_intent}"), "sk": to_value(PAYMENT_SK)}


def grant_purchase(
    store: LedgerStore,
    paid: Paid,
    *,
    source: str,
    account_changes: Callable[[Account], dict[str, Any]] | None = None,
) -> bool:
    """Grant a paid order once, with the payment's record (what a refund will look up) and the order marked
    paid by this PaymentIntent in the same transaction. Returns False for a duplicate; raises Unmatched when
    another PaymentIntent paid the order first (the order's condition refused it)."""
    order = paid.order
    reference = {
        "source": source,
        "region": order.region,
        "packs": order.packs,
        "amount_cents": order.amount_cents,
        "order_id": order.order_id,
        **{k: v for k, v in (("payment_intent", paid.payment_intent), ("session_id", paid.session_id)) if v},
    }

    attempt_id = uuid.uuid4().hex  # our own write retried after a lost answer is not a duplicate

    def build(state: Account) -> Write:
        plan = L.plan_grant(
            state.pools, state.held, L.purchased_pool(order.region), order.credits, "purchase"
        )
        outcome = {"credits": order.credits, **reference}
        # The order first: a PaymentIntent other than the one that paid it must be told from a duplicate.
        items = [_mark_paid(store, paid), store.guard_item(order.account_id, paid.key, outcome, attempt_id)]
        if paid.payment_intent:
            record = {
                "pk": f"PAYMENT#{paid.payment_intent}",
                "sk": PAYMENT_SK,
                "type": "payment",
                "account_id": order.account_id,
                "region": order.region,
                "packs": order.packs,
                "credits": order.credits,
                "amount_cents": order.amount_cents,
                "session_id": paid.session_id or order.session_id,
                "order_id": order.order_id,
                "refunded_cents": 0,
                "disputed_cents": 0,
                "clawed_credits": 0,
                "taken_credits": 0,
                "created_at": iso(store.clock()),
            }
            items.append(
                {
                    "Put": {
                        "TableName": store.table,
                        "Item": to_item(record),
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            )
        changes = account_changes(state) if account_changes else {}
        return Write(plan, paid.key, reference, items=items, account_changes=changes)

    def tripped(item: dict[str, Any]) -> dict[str, Any]:
        if item.get("type") == "order":
            raise orders.Unmatched(
                "paid_by_another_payment_intent", order_id=order.order_id, recorded=item.get("payment_intent")
            )
        return item

    _, result = store.apply(order.account_id, build, tripped)
    applied = isinstance(result, Write) or result.get("attempt_id") == attempt_id
    if applied:
        count("PacksPurchased", order.packs)
    logger.info("pack grant", extra={"key": paid.key, "applied": applied, "source": source})
    return applied


def _mark_paid(store: LedgerStore, paid: Paid) -> dict[str, Any]:
    """The order's update in the grant: paid, by this PaymentIntent and no other (bound on first payment)."""
    conditions = ["attribute_exists(pk)"]
    values = {":paid": to_value("paid"), ":now": to_value(iso(store.clock()))}
    assignments = ["#status = :paid", "paid_at = if_not_exists(paid_at, :now)"]
    if paid.payment_intent:
        conditions.append("(attribute_not_exists(payment_intent) OR payment_intent = :intent)")
        assignments.append("payment_intent = :intent")
        values[":intent"] = to_value(paid.payment_intent)
    if paid.session_id:
        conditions.append("session_id = :session")
        values[":session"] = to_value(paid.session_id)
    return {
        "Update": {
            "TableName": store.table,
            "Key": orders.order_key(paid.order.order_id),
            "UpdateExpression": "SET " + ", ".join(assignments),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


# ---- refunds and disputes ---------------------------------------------------------------------------


class PaymentNotGranted(Conflict):
    code = "payment_not_granted"


class _PaymentMoved(Exception):
    """Another clawback of the same payment landed between our read and our write."""


def claw_back(
    store: LedgerStore,
    *,
    payment_intent: str,
    charge_id: str,
    event_key: str,
    refunded_cents: int = 0,
    disputed: bool = False,
    account_changes: Callable[[Account], dict[str, Any]] | None = None,
) -> str:
    """Take back the payment's still-unspent credits in proportion to what was refunded or disputed.

    The payment record keeps the cumulative refunded and disputed amounts and the credits already
    accounted for, so a dispute followed by a refund of the same charge takes back once in total, and a
    partial refund takes its proportional share. Never below zero: what the pool no longer holds was spent.
    """
    for _ in range(store.max_attempts):
        found = store.client.get_item(
            TableName=store.table, Key=payment_key(payment_intent), ConsistentRead=True
        )
        if "Item" not in found:
            logger.error(
                "ALERT refund or dispute for a payment we never granted",
                extra={"payment_intent": payment_intent, "charge": charge_id},
            )
            # Its grant may still be on the way (Stripe delays, reorders and retries events): answer non-2xx
            # so Stripe redelivers this one later; answering 200 would let the later grant keep the credits.
            raise PaymentNotGranted(
                "No pack was granted for this payment yet; deliver this event again later.",
                {"payment_intent": payment_intent},
            )
        payment = from_item(found["Item"])
        try:
            return _claw_back_once(
                store,
                payment,
                payment_intent,
                charge_id,
                event_key,
                refunded_cents,
                disputed,
                account_changes,
            )
        except _PaymentMoved:
            continue
    raise UpstreamUnavailable(
        "The payment record is too busy; try again.", {"payment_intent": payment_intent}
    )


def _claw_back_once(
    store: LedgerStore,
    payment: dict[str, Any],
    payment_intent: str,
    charge_id: str,
    event_key: str,
    refunded_cents: int,
    disputed: bool,
    account_changes: Callable[[Account], dict[str, Any]] | None,
) -> str:
    amount, credits = int(payment["amount_cents"]), int(payment["credits"])
    refunded = max(int(payment["refunded_cents"]), refunded_cents)
    # A dispute is taken back as a full refund (the bank pulls the whole charge back).
    disputed_cents = amount if disputed else int(payment["disputed_cents"])
    covered = min(amount, refunded + disputed_cents)
    target = credits * covered // amount  # integer floor: never take a credit that was not paid back
    due = max(0, target - int(payment["clawed_credits"]))
    op_id = f"clawback:{charge_id}:{event_key}"
    pool = L.purchased_pool(payment["region"])
    account_id = payment["account_id"]

    def build(state: Account) -> Write:
        plan, taken = L.plan_clawback(state.pools, state.held, pool, due)
        update = {
            "Update": {
                "TableName": store.table,
                "Key": payment_key(payment_intent),
                "UpdateExpression": "SET refunded_cents = :r, disputed_cents = :d, clawed_credits = :c, "
                "taken_credits = taken_credits + :t",
                "ConditionExpression": "refunded_cents = :r0 AND disputed_cents = :d0 AND clawed_credits = :c0",
                "ExpressionAttributeValues": {
                    ":r": to_value(refunded),
                    ":d": to_value(disputed_cents),
                    ":c": to_value(max(target, int(payment["clawed_credits"]))),
                    ":t": to_value(taken),
                    ":r0": to_value(int(payment["refunded_cents"])),
                    ":d0": to_value(int(payment["disputed_cents"])),
                    ":c0": to_value(int(payment["clawed_credits"])),
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        outcome = {"due": due, "taken": taken, "refunded_cents": refunded, "disputed_cents": disputed_cents}
        reference = {"charge": charge_id, "payment_intent": payment_intent, "event": event_key, **outcome}
        items = [store.guard_item(account_id, op_id, outcome), update]
        changes = account_changes(state) if account_changes else {}
        return Write(plan, op_id, reference, items=items, account_changes=changes, result=taken)

    def tripped(item: dict[str, Any]) -> int:
        if item.get("type") == "payment":
            raise _PaymentMoved()
        return -1

    _, result = store.apply(account_id, build, tripped)
    if not isinstance(result, Write):
        return "duplicate"
    logger.info("clawback", extra={"charge": charge_id, "due": due, "taken": result.result})
    return "clawed_back"
