"""Accounts: create one with its first allowance, show its balance, change its plan, adjust a pool."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from smscredits.domain import ledger as L
from smscredits.domain.account import Account
from smscredits.domain.auto_recharge import AutoRecharge
from smscredits.domain.catalog import LEGACY_CUTOFF, PLANS, REGIONS, normalise_region
from smscredits.domain.errors import InvalidRequest
from smscredits.domain.periods import period_containing, period_start_at
from smscredits.domain.text import has_visible, refuse_control_characters

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger


def create_account(
    ledger: Ledger,
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
    now = ledger.clock()
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
    return ledger.create_account(account, reference={"actor": actor, "period": start.isoformat()})


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


def auto_recharge_summary(auto: AutoRecharge) -> dict[str, Any]:
    return {"enabled": auto.enabled, "disabled_reason": auto.disabled_reason}


def canonical_pool(pool: str) -> str:
    if pool.startswith(L.PURCHASED_PREFIX):
        region = normalise_region(pool.removeprefix(L.PURCHASED_PREFIX))
        if region is None:
            raise InvalidRequest(f"Unknown pool {pool}.", {"pool": pool})
        return L.purchased_pool(region)
    return pool


def adjust_pool(
    ledger: Ledger, *, account_id: str, pool: str, credits: int, reason: str, actor: str, key: str
) -> dict[str, Any]:
    pool = canonical_pool(pool)
    reason = reason.strip()
    if not has_visible(reason):
        raise InvalidRequest(
            "Give a reason a person can read: the audit trail keeps it.", {"reason": "blank"}
        )
    refuse_control_characters(reason, "reason")
    account = ledger.known_account(account_id)
    if pool not in L.pools_for_model(account.credit_model):
        raise InvalidRequest(
            f"A {account.credit_model} account has no {pool} pool.",
            {"pool": pool, "model": account.credit_model},
        )
    _, outcome = ledger.adjust(account_id, pool, credits, op_id=f"adjust:{key}", actor=actor, reason=reason)
    return {"account_id": account_id, **outcome}


def change_plan(ledger: Ledger, *, account_id: str, plan: str, actor: str) -> dict[str, Any]:
    """An upgrade grants the difference at once; a downgrade waits for the next refresh (our rule).
    Asking twice for the same upgrade grants once: the second call finds the plan already in place."""
    account, outcome = ledger.change_plan(account_id, plan, actor=actor)
    return _plan_answer(account, outcome)


def _plan_answer(account: Account, outcome: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "account_id": account.account_id,
        "plan": account.plan,
        "pending_plan": account.pending_plan,
        "granted": int(outcome.get("granted", 0)),
        "effective": outcome.get("effective", "unchanged"),
    }
