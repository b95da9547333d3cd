"""Legacy accounts: the owner's request for a migration, and the support migration to the segment model (dry
run, or one atomic audited write)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smscredits.domain.account import Account
from smscredits.domain.movements import migrated_pools, migration_answer, refuse_pending_holds
from smscredits.domain.periods import iso

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger


def request_migration(ledger: Ledger, *, account_id: str, requested_by: str) -> dict[str, Any]:
    """Record the owner's request once (support is told by its event); a repeat answers the first request."""
    account, recorded = ledger.request_migration(account_id, requested_by=requested_by)
    assert account.migration_requested_at is not None
    return {
        "account_id": account.account_id,
        "outcome": "requested" if recorded else "already_requested",
        "migration_requested_at": iso(account.migration_requested_at),
    }


def migrate_account(
    ledger: Ledger, *, account_id: str, dry_run: bool, ratio: tuple[int, int], actor: str, key: str
) -> dict[str, Any]:
    """Dry run: the balance before and after, nothing written. Otherwise one write pinned to the balance
    version: legacy pool → purchased credits of the home region, model switched, guarded by the `migration`
    operation and by the Idempotency-Key (a retry with it answers the first answer). A migration under
    another key of a migrated account answers `already_migrated` and nothing changes."""
    account = ledger.get_account(account_id)
    if account.credit_model != "legacy" and dry_run:
        return answer(account, account, dry_run, "already_migrated", ratio, 0)
    if dry_run:
        refuse_pending_holds(account)
        movement, converted = migrated_pools(account.pools, account.held, account.home_region, ratio)
        preview = account._replace(credit_model="segment", pools=dict(movement.pools))
        return answer(account, preview, dry_run, "preview", ratio, converted)
    done = ledger.migrate(account_id, ratio=ratio, actor=actor, op_id=f"migrate:{key}")
    if done.replayed is not None:
        return dict(done.replayed)
    return answer(done.before, done.after, dry_run, done.outcome, ratio, done.converted)


def answer(
    before: Account, after: Account, dry_run: bool, outcome: str, ratio: tuple[int, int], converted: int
) -> dict[str, Any]:
    return migration_answer(before, after, dry_run=dry_run, outcome=outcome, ratio=ratio, converted=converted)
