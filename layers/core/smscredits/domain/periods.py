"""Billing periods (monthly anniversaries of an anchor date, clamped to short months as Stripe does) and the
one text form of a moment that the ledger stores and the API shows."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime


def anniversary(anchor_day: int, year: int, month: int) -> date:
    """The anchor's day in (year, month); the 29th-31st fall on the last day of shorter months."""
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def _shift_month(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def period_containing(anchor: date, day: date) -> tuple[date, date]:
    """(start, next start) of the billing period that contains `day`."""
    start = anniversary(anchor.day, day.year, day.month)
    if start > day:
        start = anniversary(anchor.day, *_shift_month(day.year, day.month, -1))
    return start, anniversary(anchor.day, *_shift_month(start.year, start.month, 1))


def period_start_at(day: date) -> datetime:
    """Periods turn over at midnight UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """A moment as stored and shown: UTC, milliseconds, `Z` (2026-11-10T12:00:00.000Z)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """The moment `iso` wrote (any ISO 8601 date-time with an offset or `Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
