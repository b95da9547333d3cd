"""Pure rules of the refresh and the migration: period boundaries over leap years, the migration plan."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from smscredits.domain import ledger as L
from smscredits.domain.periods import anniversary, period_containing
from smscredits.services.legacy import migrated_pools


@given(anchor_day=st.integers(1, 31), day=st.dates(date(2025, 1, 1), date(2030, 12, 31)))
def test_the_period_contains_the_day_and_runs_to_the_next_anniversary(anchor_day: int, day: date) -> None:
    start, next_start = period_containing(date(2026, 1, anchor_day), day)
    assert start <= day < next_start
    assert start.day == min(anchor_day, calendar.monthrange(start.year, start.month)[1])
    following = (next_start.year * 12 + next_start.month) - (start.year * 12 + start.month)
    assert following == 1


def test_fourteen_months_of_boundaries_clamp_to_month_end() -> None:
    for anchor_day in (1, 15, 28, 29, 30, 31):
        starts = set()
        day = date(2027, 1, 1)
        while day <= date(2028, 3, 31):
            starts.add(period_containing(date(2026, 1, anchor_day), day)[0])
            day += timedelta(days=1)
        expected = {anniversary(anchor_day, 2027, m) for m in range(1, 13)}
        expected |= {anniversary(anchor_day, 2028, m) for m in (1, 2, 3)}
        assert starts - {min(starts)} <= expected
        assert date(2028, 2, min(anchor_day, 29)) in starts


def test_migration_plan_moves_the_legacy_pool_to_the_home_region_and_rounds_down() -> None:
    plan, converted = migrated_pools({L.LEGACY: 49}, 0, "GB", (3, 2))
    assert converted == 73
    assert plan.pools == {pool: (73 if pool == "purchased:GB" else 0) for pool in L.SEGMENT_POOLS}
    assert [(e.kind, e.pool, e.amount) for e in plan.entries] == [
        ("migration", "legacy", -49),
        ("migration", "purchased:GB", 73),
    ]


def test_migrating_an_empty_pool_moves_nothing() -> None:
    plan, converted = migrated_pools({L.LEGACY: 0}, 0, "AU", (1, 1))
    assert converted == 0 and plan.entries == ()
    assert set(plan.pools) == set(L.SEGMENT_POOLS)
