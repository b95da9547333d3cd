"""The ledger operations that come from payments, as pure functions of the account state they will be pinned
to (as domain/movements.py's): a paid pack's grant, a clawback, auto-recharge's claim, failure and settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from smscredits.domain import auto_recharge as AR
from smscredits.domain import events as E
from smscredits.domain import ledger as L
from smscredits.domain.account import Account
from smscredits.domain.changes import Change, Guard, NewOrder, NewPayment, OrderPaid, PaymentRefunds
from smscredits.domain.clawbacks import Clawback, Clawed, with_taken
from smscredits.domain.orders import CURRENCY, Order, Paid, Payment


def grant_purchase(
    state: Account,
    paid: Paid,
    *,
    source: str,
    now: datetime,
    attempt_id: str,
    auto_recharge: Callable[[AR.AutoRecharge], AR.AutoRecharge] | None = None,
) -> Change:
    """Grant a paid order once, with the order marked paid by this PaymentIntent and the payment's record
    (what a refund will look up) in the same write. The order comes first: a PaymentIntent other than the
    one that paid it must be told from a duplicate."""
    order = paid.order
    reference = {
        "source": source,
        "region": order.region,
        "packs": order.packs,
        "amount_cents": order.amount_cents,
        "order_id": order.order_id,
        **{
            k: v
            for k, v in (
                ("payment_intent", paid.payment_intent),
                ("session_id", paid.session_id),
                ("receipt_url", paid.receipt_url),
            )
            if v
        },
    }
    records: list[Any] = [
        OrderPaid(order.order_id, paid.payment_intent, paid.session_id, now),
        Guard(paid.key, {"credits": order.credits, **reference}, attempt_id),
    ]
    if paid.payment_intent:
        payment = Payment(
            payment_intent=paid.payment_intent,
            account_id=order.account_id,
            region=order.region,
            packs=order.packs,
            credits=order.credits,
            amount_cents=order.amount_cents,
            order_id=order.order_id,
            session_id=paid.session_id or order.session_id,
            created_at=now,
            receipt_url=paid.receipt_url,
        )
        records.append(NewPayment(payment))
    changes = {"auto_recharge": auto_recharge(state.auto_recharge)} if auto_recharge else {}
    movement = L.grant_movement(
        state.pools, state.held, L.purchased_pool(order.region), order.credits, "purchase"
    )
    return Change(paid.key, movement, reference, changes, tuple(records), events=(purchase_event(paid),))


def purchase_event(paid: Paid) -> E.Event:
    """recharge.succeeded for an auto-recharge's order, pack.purchased for a checkout's."""
    order = paid.order
    common = {"region": order.region, "packs": order.packs, "credits": order.credits}
    money = {
        "amount_cents": order.amount_cents,
        "currency": order.currency,
        "payment_intent": paid.payment_intent,
    }
    if order.kind == "recharge":
        return E.event(E.RECHARGE_SUCCEEDED, recharge_id=order.order_id, **common, **money)
    return E.event(E.PACK_PURCHASED, order_id=order.order_id, **common, **money)


def claw_back(
    state: Account, payment: Payment, clawback: Clawback, *, op_id: str, reference: Mapping[str, Any]
) -> Change:
    """One step of a payment's refunds and disputes (domain/clawbacks.py): give back what a reversed dispute
    took, then take back the due credits from the payment's region pool (never below zero: what the pool no
    longer holds was spent), with the payment's record moved on and auto-recharge paused or resumed for the
    dispute, in the same write. Result: the credits taken and given back."""
    movement, taken = L.clawback_movement(
        state.pools,
        state.held,
        L.purchased_pool(payment.region),
        clawback.due,
        returned=clawback.returned,
    )
    after = with_taken(clawback.after, clawback.dispute, taken)
    outcome = {
        "due": clawback.due,
        "taken": taken,
        "returned": clawback.returned,
        "refunded_cents": after.refunded_cents,
        "disputed_cents": after.disputed_cents,
    }
    auto = None
    if clawback.dispute is not None and clawback.auto_recharge == "pause":
        auto = AR.paused_for_dispute(state.auto_recharge, clawback.dispute)
    elif clawback.dispute is not None and clawback.auto_recharge == "resume":
        auto = AR.resumed_after_dispute(state.auto_recharge, clawback.dispute)
    moved = PaymentRefunds(payment.payment_intent, clawback.before, after, taken - clawback.returned)
    disabled = clawback.auto_recharge == "pause" and auto is not None and state.auto_recharge.enabled
    return Change(
        op_id,
        movement,
        {**reference, **outcome},
        {"auto_recharge": auto} if auto is not None else {},
        (moved, Guard(op_id, outcome)),  # the payment first: its refusal means read it again
        Clawed(taken, clawback.returned),
        (E.event(E.AUTO_RECHARGE_DISABLED, reason=AR.DISABLED_DISPUTE, region=None),) if disabled else (),
    )


def claim_recharge(state: Account, region: str, needed: int, *, now: datetime, token: str) -> Change:
    """Claim one recharge in flight for (account, region) under the monthly cap (auto_recharge.claim); a new
    recharge is recorded as an order in the same write (a retried one was recorded by its first claim)."""
    after, claim, new = AR.claim(state, region, needed, now=now, token=token)
    order = Order(
        order_id=claim.recharge_id,
        kind="recharge",
        account_id=state.account_id,
        region=region,
        packs=claim.packs,
        amount_cents=claim.amount_cents,
        currency=CURRENCY,
        customer_id=claim.customer,
        status="open",
        token=token,
        payment_method=claim.payment_method,
        created_at=now,
    )
    return Change(
        f"claim:{claim.recharge_id}",
        L.no_movement(state.pools, state.held),
        account={"auto_recharge": after},
        records=(NewOrder(order),) if new else (),
        result=claim,
    )


def recharge_failed(
    state: Account, region: str, recharge_id: str, code: str, message: str | None, *, now: datetime
) -> Change:
    """A recharge certainly not paid, once per recharge id (auto_recharge.after_failure).
    Result: the reason auto-recharge was switched off by it, or None."""
    after, failures, disabled = AR.after_failure(state, region, recharge_id, code, message, now)
    op_id = f"recharge-failed:{recharge_id}"
    failed = E.event(
        E.RECHARGE_FAILED, region=region, recharge_id=recharge_id, code=code, consecutive_failures=failures
    )
    events = (
        (failed, E.event(E.AUTO_RECHARGE_DISABLED, reason=disabled, region=region)) if disabled else (failed,)
    )
    return Change(
        op_id,
        L.no_movement(state.pools, state.held),
        account={"auto_recharge": after},
        records=(Guard(op_id, {"code": code, "failures": failures}),),
        result=disabled,
        events=events,
    )


def auto_recharge_settings(
    state: Account, change: Callable[[AR.AutoRecharge], AR.AutoRecharge], op_id: str
) -> Change:
    """Auto-recharge settings or state rewritten from the current ones; no credits move."""
    after = change(state.auto_recharge)
    return Change(
        op_id, L.no_movement(state.pools, state.held), account={"auto_recharge": after}, result=after
    )
