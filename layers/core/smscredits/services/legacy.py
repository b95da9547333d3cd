"""Legacy accounts: the support migration to the segment model (dry run, or one atomic audited write)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smscredits.domain import ledger as L
from smscredits.domain.account import Account
from smscredits.domain.catalog import REGIONS
from smscredits.domain.movements import migrated_pools, refuse_pending_holds

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger


def migrate_account(
    ledger: Ledger, *, account_id: str, dry_run: bool, ratio: tuple[int, int], actor: str
) -> dict[str, Any]:
    """Dry run: the balance before and after, nothing written. Otherwise one write pinned to the balance
    version: legacy pool → purchased credits of the home region, model switched, guarded by the `migration`
    operation. A migrated account answers `already_migrated` and nothing changes."""
    account = ledger.get_account(account_id)
    if account.credit_model != "legacy":
        return answer(account, account, dry_run, "already_migrated", ratio, 0)
    if dry_run:
        refuse_pending_holds(account)
        movement, converted = migrated_pools(account.pools, account.held, account.home_region, ratio)
        preview = account._replace(credit_model="segment", pools=dict(movement.pools))
        return answer(account, preview, dry_run, "preview", ratio, converted)
    done = ledger.migrate(account_id, ratio=ratio, actor=actor)
    return answer(done.before, done.after, dry_run, done.outcome, ratio, done.converted)


def _balance(account: Account) -> dict[str, Any]:
    pools = account.pools
    return {
        "credit_model": account.credit_model,
        "legacy": pools.get(L.LEGACY, 0) if account.credit_model == "legacy" else None,
        "included": pools.get(L.INCLUDED, 0),
        "purchased": {code: pools.get(L.purchased_pool(code), 0) for code in REGIONS},
        "held": account.held,
    }


def answer(
    before: Account, after: Account, dry_run: bool, outcome: str, ratio: tuple[int, int], converted: int
) -> dict[str, Any]:
    return {
        "account_id": before.account_id,
        "dry_run": dry_run,
        "outcome": outcome,
        "ratio": f"{ratio[0]}:{ratio[1]}",
        "converted": converted,
        "before": _balance(before),
        "after": _balance(after),
        "migrated_at": after.migrated_at,
    }
