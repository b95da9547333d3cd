"""The billing-date refresh: find the due accounts and refresh each one's allowance once per period."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from smscredits.domain.periods import period_containing, period_start_at
from smscredits.observability import count, logger

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import EventPublisher, Ledger, RefreshQueue, Statements

REFRESHED_EVENT = "allowance.refreshed"


class RefreshResult(NamedTuple):
    account_id: str
    refreshed: bool  # False: the account already belonged to the current period (a duplicate or early call)
    period_start: str
    plan: str
    allowance: int


def refresh_account(
    ledger: Ledger, account_id: str, now: datetime, *, events: EventPublisher
) -> RefreshResult:
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
        announce(events, result, account.next_refresh_at)
    return result


def announce(events: EventPublisher, result: RefreshResult, next_refresh_at: datetime) -> None:
    """Publish allowance.refreshed. The credits have moved and the guard makes any retry a no-op, so a failed
    publish must not fail the refresh (a retry would not publish either): it is logged and counted instead."""
    detail = {
        "account_id": result.account_id,
        "period_start": result.period_start,
        "plan": result.plan,
        "allowance": result.allowance,
        "next_refresh_at": next_refresh_at.isoformat(),
    }
    try:
        events.publish(REFRESHED_EVENT, detail)
    except Exception:
        logger.exception("allowance.refreshed not published", extra={"account_id": result.account_id})
        count("RefreshEventNotPublished")


def run_scheduled(
    ledger: Ledger,
    statements: Statements,
    *,
    events: EventPublisher,
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
            if refresh_account(ledger, account_id, now, events=events).refreshed:
                counts["refreshed"] += 1
        except Exception:
            # One bad account must not stop the others; it stays due and the next run tries it again.
            logger.exception("refresh failed", extra={"account_id": account_id})
            counts["failed"] += 1
    return counts
