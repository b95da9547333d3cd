"""Legacy accounts: the support migration to the segment model (dry run, or one atomic audited write)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from smscredits.adapters.ledger_store import LedgerStore, Write
from smscredits.domain import ledger as L
from smscredits.domain.account import Account
from smscredits.domain.catalog import REGIONS
from smscredits.domain.errors import HoldsPending

MIGRATION_OP = "migration"


def migrated_pools(
    pools: Mapping[str, int], held: int, home_region: str, ratio: tuple[int, int]
) -> tuple[L.Plan, int]:
    """The migration plan with the segment model's pools: the legacy pool (now 0) goes, the included pool
    starts at 0 (this period's allowance already went into the legacy pool and is converted with it)."""
    plan, converted = L.plan_migration(pools, held, home_region, ratio)
    after = {pool: plan.pools.get(pool, 0) for pool in L.SEGMENT_POOLS}
    return L.Plan(after, plan.held, plan.entries), converted


def migrate_account(
    store: LedgerStore, *, account_id: str, dry_run: bool, ratio: tuple[int, int], actor: str
) -> dict[str, Any]:
    """Dry run: the balance before and after, nothing written. Otherwise one transaction pinned to the
    balance version: legacy pool → purchased credits of the home region, model switched, guarded by
    OP#migration. A migrated account answers `already_migrated` and nothing changes."""
    account = store.get_account(account_id)
    if account.credit_model != "legacy":
        return _answer(account, account, dry_run, "already_migrated", ratio, 0)
    if dry_run:
        _refuse_pending(account)
        plan, converted = migrated_pools(account.pools, account.held, account.home_region, ratio)
        preview = _as_migrated(account, plan.pools)
        return _answer(account, preview, dry_run, "preview", ratio, converted)

    attempt_id = uuid.uuid4().hex  # tells our own landed write (answer lost, retried) from another call's

    def build(state: Account) -> Write:
        if state.credit_model != "legacy":
            raise _AlreadyMigrated(state)
        _refuse_pending(state)
        plan, converted = migrated_pools(state.pools, state.held, state.home_region, ratio)
        outcome = {"converted": converted, "ratio": _ratio_text(ratio)}
        return Write(
            plan,
            MIGRATION_OP,
            {"actor": actor, **outcome},
            items=[store.guard_item(account_id, MIGRATION_OP, outcome, attempt_id)],
            account_changes={"credit_model": "segment", "migrated_at": store.clock()},
            result=(state, converted),
        )

    try:
        after, write = store.apply(account_id, build, lambda item: item)
    except _AlreadyMigrated as done:
        return _answer(done.account, done.account, dry_run, "already_migrated", ratio, 0)
    if not isinstance(write, Write):  # the guard exists: migrated by a concurrent call, or by this one
        current = store.get_account(account_id)
        if write.get("attempt_id") == attempt_id:
            converted = int(write.get("outcome", {}).get("converted", 0))
            return _answer(account, current, dry_run, "migrated", ratio, converted)
        return _answer(current, current, dry_run, "already_migrated", ratio, 0)
    before, converted = write.result
    return _answer(before, after, dry_run, "migrated", ratio, converted)


def _refuse_pending(account: Account) -> None:
    # A hold drew from the legacy pool; voided after the switch it would return to a pool the account no
    # longer has. Holds end within the sweeper's grace period, so support retries shortly.
    if account.held:
        raise HoldsPending(
            f"{account.held} credits are held for messages in flight; migrate once they are settled.",
            {"held": account.held},
        )


class _AlreadyMigrated(Exception):
    def __init__(self, account: Account) -> None:
        super().__init__("already migrated")
        self.account = account


def _as_migrated(account: Account, pools: Mapping[str, int]) -> Account:
    return replace(account, credit_model="segment", pools=dict(pools))


def _ratio_text(ratio: tuple[int, int]) -> str:
    return f"{ratio[0]}:{ratio[1]}"


def _balance(account: Account) -> dict[str, Any]:
    pools = account.pools
    return {
        "credit_model": account.credit_model,
        "legacy": pools.get(L.LEGACY, 0) if account.credit_model == "legacy" else None,
        "included": pools.get(L.INCLUDED, 0),
        "purchased": {code: pools.get(L.purchased_pool(code), 0) for code in REGIONS},
        "held": account.held,
    }


def _answer(
    before: Account, after: Account, dry_run: bool, outcome: str, ratio: tuple[int, int], converted: int
) -> dict[str, Any]:
    return {
        "account_id": before.account_id,
        "dry_run": dry_run,
        "outcome": outcome,
        "ratio": _ratio_text(ratio),
        "converted": converted,
        "before": _balance(before),
        "after": _balance(after),
        "migrated_at": after.migrated_at,
    }
