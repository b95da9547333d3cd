"""Accounts: create one with its first allowance, show its balance, change its plan, adjust a pool."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from smscredits.adapters.ledger_store import LedgerStore, Write
from smscredits.domain import ledger as L
from smscredits.domain.account import Account
from smscredits.domain.catalog import LEGACY_CUTOFF, PLANS, REGIONS, normalise_region
from smscredits.domain.errors import InvalidRequest
from smscredits.domain.periods import period_containing, period_start_at
from smscredits.domain.text import has_visible, refuse_control_characters


def create_account(
    store: LedgerStore,
    *,
    account_id: str,
    plan: str,
    billing_anchor: date,
    home_region: str,
    created_at: datetime | None,
    smart_encoding: bool,
    actor: str,
) -> Account:
    """A new account gets its first allowance for the period that contains today (docs/product.md §3)."""
    now = store.clock()
    region = normalise_region(home_region)
    if region is None:
        raise InvalidRequest(f"Unsupported home region {home_region}.", {"home_region": home_region})
    created = created_at or now
    model: L.CreditModel = "legacy" if created.date() < LEGACY_CUTOFF else "segment"
    start, next_start = period_containing(billing_anchor, now.date())
    account = Account(
        account_id=account_id,
        plan=plan,
        credit_model=model,
        home_region=region,
        billing_anchor=billing_anchor,
        created_at=created,
        period_start=start,
        next_refresh_at=period_start_at(next_start),
        allowance=PLANS[plan],
        pools={pool: 0 for pool in L.pools_for_model(model)},
        held=0,
        version=0,
        smart_encoding=smart_encoding,
    )
    return store.create_account(
        account, op_id=f"create:{account_id}", reference={"actor": actor, "period": start.isoformat()}
    )


def balance_view(account: Account) -> dict[str, Any]:
    pools = account.pools
    return {
        "account_id": account.account_id,
        "credit_model": account.credit_model,
        "plan": account.plan,
        "pending_plan": account.pending_plan,
        "included": {
            "available": pools.get(L.INCLUDED, 0),
            "allowance": account.allowance,
            "period_start": account.period_start,
            "resets_at": account.next_refresh_at,
        },
        "purchased": {code: pools.get(L.purchased_pool(code), 0) for code in REGIONS},
        "legacy": pools.get(L.LEGACY, 0) if account.credit_model == "legacy" else None,
        "held": account.held,
        "auto_recharge": auto_recharge_summary(account.auto_recharge),
    }


def auto_recharge_summary(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "enabled": bool(settings.get("enabled", False)),
        "disabled_reason": settings.get("disabled_reason"),
    }


def canonical_pool(pool: str) -> str:
    if pool.startswith(L.PURCHASED_PREFIX):
        region = normalise_region(pool.removeprefix(L.PURCHASED_PREFIX))
        if region is None:
            raise InvalidRequest(f"Unknown pool {pool}.", {"pool": pool})
        return L.purchased_pool(region)
    return pool


def adjust_pool(
    store: LedgerStore, *, account_id: str, pool: str, credits: int, reason: str, actor: str, key: str
) -> dict[str, Any]:
    pool = canonical_pool(pool)
    reason = reason.strip()
    if not has_visible(reason):
        raise InvalidRequest(
            "Give a reason a person can read: the audit trail keeps it.", {"reason": "blank"}
        )
    refuse_control_characters(reason, "reason")
    account = store.cached_account(account_id) or store.get_account(account_id)
    if pool not in L.pools_for_model(account.credit_model):
        raise InvalidRequest(
            f"A {account.credit_model} account has no {pool} pool.",
            {"pool": pool, "model": account.credit_model},
        )
    _, outcome = store.adjust(account_id, pool, credits, op_id=f"adjust:{key}", actor=actor, reason=reason)
    return {"account_id": account_id, **outcome}


def change_plan(store: LedgerStore, *, account_id: str, plan: str, actor: str) -> dict[str, Any]:
    """An upgrade grants the difference at once; a downgrade waits for the next refresh (our rule).

    Asking twice for the same upgrade grants once: the second call finds the plan already in place. The
    guard is keyed by the balance version the change was computed from (the write is pinned to it), so a
    later change back to a plan in the same period (cancel a downgrade, downgrade again) is not taken
    for a duplicate and silently dropped."""
    new_allowance = PLANS[plan]

    def build(state: Account) -> Write:
        op_id = f"plan:{state.period_start.isoformat()}:{state.version}:{plan}"
        difference = new_allowance - state.allowance
        if plan == state.plan and state.pending_plan is None:
            raise _Unchanged(state)
        if difference > 0:
            pool = L.LEGACY if state.credit_model == "legacy" else L.INCLUDED
            plan_ = L.plan_grant(state.pools, state.held, pool, difference)
            changes: dict[str, Any] = {"plan": plan, "allowance": new_allowance, "pending_plan": None}
            result = {"granted": difference, "effective": "now"}
        elif plan == state.plan:  # cancelling a pending downgrade
            plan_, changes, result = (
                L.Plan(state.pools, state.held, ()),
                {"pending_plan": None},
                {"granted": 0, "effective": "now"},
            )
        else:
            plan_, changes = L.Plan(state.pools, state.held, ()), {"pending_plan": plan}
            result = {"granted": 0, "effective": "next_refresh"}
        return Write(
            plan_,
            op_id,
            {"actor": actor, "plan": plan},
            items=[store.guard_item(account_id, op_id, result)],
            account_changes=changes,
            result=result,
        )

    try:
        after, write = store.apply(account_id, build, lambda item: item.get("outcome", {}))
    except _Unchanged as unchanged:
        return _plan_answer(unchanged.account, {"granted": 0, "effective": "unchanged"})
    outcome = write.result if isinstance(write, Write) else write
    return _plan_answer(after if isinstance(write, Write) else store.get_account(account_id), outcome)


class _Unchanged(Exception):
    def __init__(self, account: Account) -> None:
        super().__init__("unchanged")
        self.account = account


def _plan_answer(account: Account, outcome: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "account_id": account.account_id,
        "plan": account.plan,
        "pending_plan": account.pending_plan,
        "granted": int(outcome.get("granted", 0)),
        "effective": outcome.get("effective", "unchanged"),
    }
