"""A Stripe Billing subscription's state applied to an account, as a pure function of the account state: the
plan (an upgrade grants the difference now, a downgrade waits for the refresh), the billing anchor and the
subscription kept for the refresh (which ends the allowance after a cancellation)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from smscredits.domain import ledger as L
from smscredits.domain.account import Account
from smscredits.domain.changes import Change, Unchanged
from smscredits.domain.periods import period_containing, period_start_at
from smscredits.domain.subscriptions import Subscription


def sync_subscription(
    state: Account, subscription: Subscription, *, allowances: Mapping[str, int], today: date
) -> Change:
    """The Change that keeps `subscription` on the account. Unchanged (answer "stale") when the account keeps a
    newer state of it or a later subscription. Result: {"plan", "pending_plan", "granted", "effective"}."""
    if not subscription.newer_than(state.subscription):
        raise Unchanged(state, {"outcome": "stale"})
    fields: dict[str, Any] = {"subscription": subscription}
    start, next_start = period_containing(subscription.anchor, today)
    turning_over = start > state.period_start  # the new anchor's period has begun: the refresh grants it
    if subscription.anchor != state.billing_anchor:
        fields["billing_anchor"] = subscription.anchor
        fields["next_refresh_at"] = period_start_at(start if turning_over else next_start)
    movement = L.no_movement(state.pools, state.held)
    granted, effective = 0, "unchanged"
    plan = subscription.plan
    if plan is not None and subscription.in_force() and (plan, None) != (state.plan, state.pending_plan):
        difference = allowances[plan] - state.allowance
        if turning_over:
            fields.update(plan=plan, pending_plan=None)
            effective = "next_refresh"
        elif difference > 0:  # an upgrade, or a reactivation after the allowance ended: the difference now
            pool = L.LEGACY if state.credit_model == "legacy" else L.INCLUDED
            movement = L.grant_movement(state.pools, state.held, pool, difference)
            fields.update(plan=plan, allowance=allowances[plan], pending_plan=None)
            granted, effective = difference, "now"
        elif plan == state.plan:  # back to the plan in force: the pending downgrade is dropped
            fields["pending_plan"] = None
            effective = "now"
        else:
            fields["pending_plan"] = plan
            effective = "next_refresh"
    result = {
        "outcome": "applied",
        "plan": fields.get("plan", state.plan),
        "pending_plan": fields.get("pending_plan", state.pending_plan),
        "granted": granted,
        "effective": effective,
    }
    op_id = f"subscription:{subscription.subscription_id}:{subscription.event_at}:{state.version}"
    reference = {"subscription": subscription.subscription_id, "status": subscription.status}
    if plan is not None:
        reference["plan"] = plan
    return Change(op_id, movement, reference, fields, result=result)
