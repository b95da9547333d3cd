"""Accounts: create one with its first allowance, show its balance, list, read and change its settings, change its
plan, adjust a pool."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from smscredits.domain import ledger as L
from smscredits.domain.account import DEFAULT_LOW_BALANCE_THRESHOLD, Account
from smscredits.domain.account_settings import (
    AccountPatch,
    account_view,
    refuse_future_anchor,
    with_stripe_customer,
)
from smscredits.domain.auto_recharge import NEVER_SET_UP, AutoRecharge
from smscredits.domain.catalog import LEGACY_CUTOFF, PLANS, REGIONS, normalise_region
from smscredits.domain.errors import InvalidRequest
from smscredits.domain.periods import period_containing, period_start_at
from smscredits.domain.text import has_visible, refuse_control_characters

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger, Statements


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
    stripe_customer_id: str | None = None,
    low_balance_threshold: int = DEFAULT_LOW_BALANCE_THRESHOLD,
) -> Account:
    """A new account gets its first allowance for the period that contains today (docs/product.md §3); a
    billing anchor after today is refused (docs/billing-rules.md, "Account settings")."""
    now = ledger.clock()
    region = home_region_of(home_region)
    refuse_future_anchor(billing_anchor, now.date())
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
        auto_recharge=with_stripe_customer(NEVER_SET_UP, stripe_customer_id)
        if stripe_customer_id
        else NEVER_SET_UP,
        low_balance_threshold=low_balance_threshold,
    )
    return ledger.create_account(account, reference={"actor": actor, "period": start.isoformat()})


def home_region_of(home_region: str) -> str:
    region = normalise_region(home_region)
    if region is None:
        raise InvalidRequest(f"Unsupported home region {home_region}.", {"home_region": home_region})
    return region


def list_accounts(statements: Statements, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of accounts by id, as support reads them; `next_cursor` continues after it."""
    page, next_cursor = statements.list_accounts(limit=limit, cursor=cursor)
    return {"accounts": [account_view(account) for account in page], "next_cursor": next_cursor}


def update_account(
    ledger: Ledger, *, account_id: str, patch: AccountPatch, actor: str, key: str
) -> dict[str, Any]:
    """Support's change of an account's settings: one write pinned to the balance version, once per
    Idempotency-Key (a retry answers the first answer); a refused field writes nothing."""
    if not patch.requested():
        raise InvalidRequest("Name at least one setting to change.", {"body": "empty"})
    if patch.home_region is not None:
        patch = patch._replace(home_region=home_region_of(patch.home_region))
    _, answer = ledger.update_account(account_id, patch, actor=actor, op_id=f"settings:{key}")
    return dict(answer)


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
        "migration_requested_at": account.migration_requested_at,
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


def change_plan(ledger: Ledger, *, account_id: str, plan: str, actor: str, key: str) -> dict[str, Any]:
    """An upgrade grants the difference at once; a downgrade waits for the next refresh (our rule).
    A retry with the same Idempotency-Key answers the first answer; the same upgrade under another key grants
    nothing: it finds the plan already in place."""
    _, outcome = ledger.change_plan(account_id, plan, actor=actor, op_id=f"plan:{key}")
    return plan_answer(account_id, outcome)


def plan_answer(account_id: str, outcome: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "plan": outcome["plan"],
        "pending_plan": outcome["pending_plan"],
        "granted": int(outcome["granted"]),
        "effective": outcome["effective"],
    }
