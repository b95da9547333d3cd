"""The billing-date refresh: find the due accounts and refresh each one's allowance once per period (its
allowance.refreshed is written with the refresh: domain/movements.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from smscredits.domain.periods import period_containing, period_start_at
from smscredits.observability import count, logger

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger, RefreshQueue, Statements


class RefreshResult(NamedTuple):
    account_id: str
    refreshed: bool  # False: the account already belonged to the current period (a duplicate or early call)
    period_start: str
    plan: str
    allowance: int


def refresh_account(ledger: Ledger, account_id: str, now: datetime) -> RefreshResult:
    """Refresh the account's allowance for the period that contains `now`, once. An account overdue by days (a missed
    run) is refreshed once for the current period; the periods it missed are not back-filled."""
    account = ledger.get_account(account_id)
    start, next_start = period_containing(account.billing_anchor, now.astimezone(UTC).date())
    refreshed = False
    if account.period_start < start:
        account, refreshed = ledger.refresh_allowance(
            account_id, period_start=start, next_refresh_at=period_start_at(next_start)
        )
    result = RefreshResult(
        account_id, refreshed, account.period_start.isoformat(), account.plan, account.allowance
    )
    if refreshed:
        count("AllowancesRefreshed")
    return result


def run_scheduled(
    ledger: Ledger,
    statements: Statements,
    *,
    queue: RefreshQueue | None,
    inline_max: int,
) -> dict[str, int]:
    """The hourly run: refresh a few due accounts here, fan many out to the worker queue. Without a queue
    (local mode) every due account is refreshed here."""
    now = ledger.clock()
    due = list(statements.due_accounts(now))
    if queue is not None and len(due) > inline_max:
        refused = queue.send(due)
        count("RefreshQueued", len(due) - refused)
        if refused:
            logger.warning("refresh messages refused by SQS; they stay due", extra={"refused": refused})
        return {"due": len(due), "queued": len(due) - refused, "refreshed": 0, "failed": refused}
    counts = {"due": len(due), "queued": 0, "refreshed": 0, "failed": 0}
    for account_id in due:
        try:
            if refresh_account(ledger, account_id, now).refreshed:
                counts["refreshed"] += 1
        except Exception:
            # One bad account must not stop the others; it stays due and the next run tries it again.
            logger.exception("refresh failed", extra={"account_id": account_id})
            counts["failed"] += 1
    return counts
