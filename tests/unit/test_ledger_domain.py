"""Pure ledger math, billing periods, regions and the audit check: no AWS, expectations worked out by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold, LedgerRecord
from smscredits.domain.audit import check_account
from smscredits.domain.catalog import DEFAULT_LEGACY_CREDITS_PER_MESSAGE, normalise_region
from smscredits.domain.errors import InsufficientCredits, InvalidNumber, InvalidRequest, UnsupportedRegion
from smscredits.domain.ledger import Entry, Funding
from smscredits.domain.periods import period_containing
from smscredits.domain.regions import mask_number, parse_recipient

AU = "purchased:AU"
US = "purchased:US"
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def pools(**values: int) -> dict[str, int]:
    """pools(included=3, AU=5) → {"included": 3, "purchased:AU": 5}."""
    out: dict[str, int] = {}
    for name, value in values.items():
        out[name if name in (L.INCLUDED, L.LEGACY) else L.purchased_pool(name)] = value
    return out


# ---- funding_for -----------------------------------------------------------------------------------


def test_funding_included_first():
    assert L.funding_for("segment", pools(included=10, AU=10), "AU", 4) == (Funding(L.INCLUDED, 4),)


def test_funding_region_pool_when_included_is_empty():
    assert L.funding_for("segment", pools(included=0, AU=10), "AU", 4) == (Funding(AU, 4),)


def test_funding_region_pool_when_included_is_missing():
    assert L.funding_for("segment", pools(AU=10), "AU", 10) == (Funding(AU, 10),)


def test_funding_split_across_included_and_region():
    assert L.funding_for("segment", pools(included=2, AU=10), "AU", 5) == (
        Funding(L.INCLUDED, 2),
        Funding(AU, 3),
    )


def test_funding_exact_fit_takes_everything():
    assert L.funding_for("segment", pools(included=2, AU=3), "AU", 5) == (
        Funding(L.INCLUDED, 2),
        Funding(AU, 3),
    )


def test_funding_never_uses_another_regions_pool():
    with pytest.raises(InsufficientCredits):
        L.funding_for("segment", pools(included=1, US=100), "AU", 2)


def test_funding_legacy_uses_only_the_legacy_pool():
    assert L.funding_for("legacy", pools(legacy=5, included=100, AU=100), "AU", 3) == (Funding(L.LEGACY, 3),)
    with pytest.raises(InsufficientCredits):
        L.funding_for("legacy", pools(legacy=2, included=100, AU=100), "AU", 3)


def test_funding_insufficient_reports_what_was_needed_and_held():
    with pytest.raises(InsufficientCredits) as caught:
        L.funding_for("segment", pools(included=1, AU=2, US=50), "AU", 4)
    error = caught.value
    assert error.code == "insufficient_credits"
    assert error.status == 402
    assert error.details["needed"] == 4
    assert error.details["pools"] == {L.INCLUDED: 1, AU: 2}
    assert error.details["region"] == "AU"


def test_funding_ignores_negative_pools_and_never_funds_negatively():
    # A negative pool (which the store never writes) must not count as money nor be "taken" negatively.
    funding = L.funding_for("segment", {L.INCLUDED: -5, AU: 3}, "AU", 3)
    assert funding == (Funding(AU, 3),)
    assert all(f.credits > 0 for f in funding)
    with pytest.raises(InsufficientCredits):
        L.funding_for("segment", {L.INCLUDED: -5, AU: 3}, "AU", 4)


@pytest.mark.parametrize("included", range(0, 6))
@pytest.mark.parametrize("region_pool", range(0, 6))
@pytest.mark.parametrize("credits", range(1, 8))
def test_funding_is_all_or_nothing_and_exact(included, region_pool, credits):
    balance = pools(included=included, AU=region_pool)
    if included + region_pool < credits:
        with pytest.raises(InsufficientCredits):
            L.funding_for("segment", balance, "AU", credits)
        return
    funding = L.funding_for("segment", balance, "AU", credits)
    assert sum(f.credits for f in funding) == credits
    assert all(f.credits > 0 for f in funding)
    by_pool = {f.pool: f.credits for f in funding}
    assert by_pool.get(L.INCLUDED, 0) == min(included, credits)
    assert by_pool.get(AU, 0) == credits - min(included, credits)


# ---- message_credits -------------------------------------------------------------------------------


def test_message_credits_segment_model_is_one_per_segment():
    assert L.message_credits("segment", 3, "AU", DEFAULT_LEGACY_CREDITS_PER_MESSAGE) == 3


def test_message_credits_legacy_is_a_flat_rate_per_region():
    rates = {"AU": 2, "US": 1, "GB": 3, "NZ": 4}
    assert L.message_credits("legacy", 1, "AU", rates) == 2
    assert L.message_credits("legacy", 9, "AU", rates) == 2
    assert L.message_credits("legacy", 9, "GB", rates) == 3
    assert L.message_credits("legacy", 1, "NZ", rates) == 4
    assert all(L.message_credits("legacy", 7, r, DEFAULT_LEGACY_CREDITS_PER_MESSAGE) == 1 for r in rates)


# ---- planners --------------------------------------------------------------------------------------


def test_grant_movement():
    plan = L.grant_movement(pools(included=5), 2, AU, 100)
    assert plan.pools == {L.INCLUDED: 5, AU: 100}
    assert plan.held == 2
    assert plan.entries == (Entry("grant", AU, 100, 100),)


def test_grant_movement_with_kind_and_existing_balance():
    plan = L.grant_movement(pools(AU=30), 0, AU, 100, kind="purchase")
    assert plan.entries == (Entry("purchase", AU, 100, 130),)
    assert plan.pools[AU] == 130


@pytest.mark.parametrize("credits", [0, -1])
def test_grant_movement_refuses_non_positive(credits):
    with pytest.raises(InvalidRequest):
        L.grant_movement(pools(AU=1), 0, AU, credits)


def test_grant_movement_does_not_mutate_its_input():
    before = pools(included=5)
    L.grant_movement(before, 0, L.INCLUDED, 5)
    assert before == {L.INCLUDED: 5}


def test_hold_movement():
    plan = L.hold_movement(pools(included=2, AU=10), 1, (Funding(L.INCLUDED, 2), Funding(AU, 3)))
    assert plan.pools == {L.INCLUDED: 0, AU: 7}
    assert plan.held == 6
    assert plan.entries == (Entry("hold", L.INCLUDED, -2, 0), Entry("hold", AU, -3, 7))


def test_hold_movement_refuses_overdraw():
    with pytest.raises(InvalidRequest):
        L.hold_movement(pools(AU=1), 0, (Funding(AU, 2),))


def test_post_movement_moves_no_credits():
    plan = L.post_movement(pools(included=0, AU=7), 5, (Funding(L.INCLUDED, 2), Funding(AU, 3)))
    assert plan.pools == {L.INCLUDED: 0, AU: 7}
    assert plan.held == 0
    assert plan.entries == (Entry("post", L.INCLUDED, 0, 0), Entry("post", AU, 0, 7))


def test_void_movement_returns_to_the_pools_it_came_from():
    plan = L.void_movement(
        pools(included=0, AU=7), 5, (Funding(L.INCLUDED, 2), Funding(AU, 3)), included_lapsed=False
    )
    assert plan.pools == {L.INCLUDED: 2, AU: 10}
    assert plan.held == 0
    assert plan.entries == (Entry("void", L.INCLUDED, 2, 2), Entry("void", AU, 3, 10))


def test_void_movement_with_included_lapsed_returns_then_expires():
    plan = L.void_movement(
        pools(included=50, AU=7), 5, (Funding(L.INCLUDED, 2), Funding(AU, 3)), included_lapsed=True
    )
    assert plan.pools == {L.INCLUDED: 50, AU: 10}
    assert plan.held == 0
    assert plan.entries == (
        Entry("void", L.INCLUDED, 2, 52),
        Entry("expiry", L.INCLUDED, -2, 50),
        Entry("void", AU, 3, 10),
    )


def test_void_movement_lapse_does_not_touch_purchased_or_legacy():
    plan = L.void_movement(pools(legacy=1), 4, (Funding(L.LEGACY, 4),), included_lapsed=True)
    assert plan.pools == {L.LEGACY: 5}
    assert plan.entries == (Entry("void", L.LEGACY, 4, 5),)


def test_refresh_movement_segment_expires_then_grants():
    plan = L.refresh_movement(pools(included=13, AU=40), 3, "segment", 50)
    assert plan.pools == {L.INCLUDED: 50, AU: 40}
    assert plan.held == 3
    assert plan.entries == (Entry("expiry", L.INCLUDED, -13, 0), Entry("grant", L.INCLUDED, 50, 50))


def test_refresh_movement_segment_with_nothing_left_only_grants():
    plan = L.refresh_movement(pools(included=0, AU=40), 0, "segment", 75)
    assert plan.entries == (Entry("grant", L.INCLUDED, 75, 75),)
    assert plan.pools == {L.INCLUDED: 75, AU: 40}


def test_refresh_movement_segment_with_zero_allowance_only_expires():
    plan = L.refresh_movement(pools(included=9), 0, "segment", 0)
    assert plan.entries == (Entry("expiry", L.INCLUDED, -9, 0),)
    assert plan.pools == {L.INCLUDED: 0}


def test_refresh_movement_legacy_tops_up_and_nothing_lapses():
    plan = L.refresh_movement(pools(legacy=30), 2, "legacy", 50)
    assert plan.pools == {L.LEGACY: 80}
    assert plan.held == 2
    assert plan.entries == (Entry("grant", L.LEGACY, 50, 80),)
    assert all(e.kind != "expiry" for e in plan.entries)


def test_clawback_movement_takes_what_is_asked_when_available():
    plan, taken = L.clawback_movement(pools(AU=100), 0, AU, 60)
    assert taken == 60
    assert plan.pools == {AU: 40}
    assert plan.entries == (Entry("clawback", AU, -60, 40),)


def test_clawback_movement_clamps_at_zero():
    plan, taken = L.clawback_movement(pools(AU=25), 4, AU, 60)
    assert taken == 25
    assert plan.pools == {AU: 0}
    assert plan.held == 4
    assert plan.entries == (Entry("clawback", AU, -25, 0),)


def test_clawback_movement_of_an_empty_pool_writes_no_entry():
    plan, taken = L.clawback_movement(pools(AU=0), 0, AU, 60)
    assert taken == 0
    assert plan.entries == ()
    assert plan.pools == {AU: 0}


def test_migration_movement_one_to_one():
    plan, converted = L.migration_movement(pools(legacy=37, AU=5), 0, "AU", (1, 1))
    assert converted == 37
    assert plan.pools == {L.LEGACY: 0, AU: 42}
    assert plan.entries == (Entry("migration", L.LEGACY, -37, 0), Entry("migration", AU, 37, 42))


def test_migration_movement_three_to_two_rounds_down():
    plan, converted = L.migration_movement(pools(legacy=7), 0, "GB", (3, 2))
    assert converted == 10  # 7 * 3 / 2 = 10.5 → 10
    assert plan.pools == {L.LEGACY: 0, "purchased:GB": 10}
    assert plan.entries == (Entry("migration", L.LEGACY, -7, 0), Entry("migration", "purchased:GB", 10, 10))


def test_migration_movement_of_an_empty_legacy_pool():
    plan, converted = L.migration_movement(pools(legacy=0), 0, "AU", (1, 1))
    assert converted == 0
    assert plan.entries == ()


def test_adjust_movement_positive_and_negative():
    up = L.adjust_movement(pools(AU=5), 0, AU, 10)
    assert up.pools == {AU: 15}
    assert up.entries == (Entry("adjustment", AU, 10, 15),)
    down = L.adjust_movement(pools(AU=5), 0, AU, -5)
    assert down.pools == {AU: 0}
    assert down.entries == (Entry("adjustment", AU, -5, 0),)


def test_adjust_movement_refuses_below_zero():
    with pytest.raises(InvalidRequest) as caught:
        L.adjust_movement(pools(AU=5), 0, AU, -6)
    assert caught.value.details == {"pool": AU, "available": 5, "credits": -6}


def test_adjust_movement_refuses_zero():
    with pytest.raises(InvalidRequest):
        L.adjust_movement(pools(AU=5), 0, AU, 0)


def test_balance_after_chains_per_pool():
    """Applying a sequence of plans: every entry's balance_after is the running sum of its pool."""
    balance: dict[str, int] = {}
    held = 0
    running: dict[str, int] = {}
    steps = [
        lambda b, h: L.grant_movement(b, h, L.INCLUDED, 5),
        lambda b, h: L.grant_movement(b, h, AU, 100, kind="purchase"),
        lambda b, h: L.hold_movement(b, h, L.funding_for("segment", b, "AU", 7)),
        lambda b, h: L.void_movement(b, h, (Funding(L.INCLUDED, 5), Funding(AU, 2)), included_lapsed=True),
        lambda b, h: L.refresh_movement(b, h, "segment", 50),
        lambda b, h: L.adjust_movement(b, h, AU, -8),
    ]
    for step in steps:
        plan = step(balance, held)
        for entry in plan.entries:
            running[entry.pool] = running.get(entry.pool, 0) + entry.amount
            assert entry.balance_after == running[entry.pool]
        balance, held = dict(plan.pools), plan.held
    assert balance == {L.INCLUDED: 50, AU: 92}  # 100 - 2 held + 2 voided - 8 adjusted
    assert held == 0
    assert {p: running[p] for p in balance} == balance


# ---- periods ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "day", "expected"),
    [
        (date(2026, 1, 1), date(2027, 12, 31), (date(2027, 12, 1), date(2028, 1, 1))),
        (date(2026, 1, 1), date(2027, 1, 1), (date(2027, 1, 1), date(2027, 2, 1))),
        (date(2026, 3, 15), date(2027, 1, 10), (date(2026, 12, 15), date(2027, 1, 15))),
        (date(2026, 3, 15), date(2027, 1, 15), (date(2027, 1, 15), date(2027, 2, 15))),
        (date(2026, 3, 28), date(2027, 2, 28), (date(2027, 2, 28), date(2027, 3, 28))),
        (date(2026, 3, 28), date(2028, 2, 29), (date(2028, 2, 28), date(2028, 3, 28))),
        # 29th: the last day of February in a non-leap year, the 29th in a leap year.
        (date(2026, 1, 29), date(2027, 2, 28), (date(2027, 2, 28), date(2027, 3, 29))),
        (date(2026, 1, 29), date(2027, 2, 27), (date(2027, 1, 29), date(2027, 2, 28))),
        (date(2026, 1, 29), date(2027, 3, 1), (date(2027, 2, 28), date(2027, 3, 29))),
        (date(2026, 1, 29), date(2028, 2, 28), (date(2028, 1, 29), date(2028, 2, 29))),
        (date(2026, 1, 29), date(2028, 2, 29), (date(2028, 2, 29), date(2028, 3, 29))),
        # 30th
        (date(2026, 1, 30), date(2027, 2, 28), (date(2027, 2, 28), date(2027, 3, 30))),
        (date(2026, 1, 30), date(2028, 2, 29), (date(2028, 2, 29), date(2028, 3, 30))),
        (date(2026, 1, 30), date(2028, 2, 28), (date(2028, 1, 30), date(2028, 2, 29))),
        (date(2026, 1, 30), date(2027, 4, 30), (date(2027, 4, 30), date(2027, 5, 30))),
        # 31st: clamped to the 30th of 30-day months and the end of February.
        (date(2026, 1, 31), date(2027, 2, 27), (date(2027, 1, 31), date(2027, 2, 28))),
        (date(2026, 1, 31), date(2027, 2, 28), (date(2027, 2, 28), date(2027, 3, 31))),
        (date(2026, 1, 31), date(2027, 3, 30), (date(2027, 2, 28), date(2027, 3, 31))),
        (date(2026, 1, 31), date(2028, 2, 28), (date(2028, 1, 31), date(2028, 2, 29))),
        (date(2026, 1, 31), date(2028, 2, 29), (date(2028, 2, 29), date(2028, 3, 31))),
        (date(2026, 1, 31), date(2027, 4, 30), (date(2027, 4, 30), date(2027, 5, 31))),
        (date(2026, 1, 31), date(2027, 4, 29), (date(2027, 3, 31), date(2027, 4, 30))),
        (date(2026, 1, 31), date(2027, 12, 31), (date(2027, 12, 31), date(2028, 1, 31))),
    ],
)
def test_period_containing(anchor, day, expected):
    assert period_containing(anchor, day) == expected


@pytest.mark.parametrize("anchor_day", [1, 15, 28, 29, 30, 31])
def test_periods_tile_the_calendar(anchor_day):
    """Over 2027-2028 (non-leap then leap), every day falls in exactly one period and periods chain."""
    anchor = date(2026, 1, anchor_day)
    day = date(2027, 1, 1)
    previous: tuple[date, date] | None = None
    starts = set()
    while day <= date(2028, 12, 31):
        start, next_start = period_containing(anchor, day)
        assert start <= day < next_start
        assert 28 <= (next_start - start).days <= 31
        if previous is not None and start != previous[0]:
            assert start == previous[1]
        previous = (start, next_start)
        starts.add(start)
        day += timedelta(days=1)
    assert len(starts) in (24, 25)


# ---- regions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "e164", "region"),
    [
        ("+61491570156", "+61491570156", "AU"),
        ("+61412345678", "+61412345678", "AU"),
        ("+12025550123", "+12025550123", "US"),
        ("+1 202 555 0123", "+12025550123", "US"),
        ("+447400123456", "+447400123456", "GB"),
        ("+442079460123", "+442079460123", "GB"),
        ("+64211234567", "+64211234567", "NZ"),
        ("+64 21 123 4567", "+64211234567", "NZ"),
    ],
)
def test_parse_recipient_supported(to, e164, region):
    assert parse_recipient(to) == (e164, region)


@pytest.mark.parametrize("to", ["+14165550123", "+16135550123", "+4915112345678", "+447911123456"])
def test_parse_recipient_valid_but_unsupported(to):
    # +1 416 / 613 are Canadian; +49 is Germany; +44 7911 is Guernsey (GG), not GB.
    with pytest.raises(UnsupportedRegion) as caught:
        parse_recipient(to)
    assert caught.value.code == "unsupported_region"
    assert caught.value.details["supported"] == ["AU", "GB", "NZ", "US"]


def test_parse_recipient_canadian_number_reports_ca():
    with pytest.raises(UnsupportedRegion) as caught:
        parse_recipient("+14165550123")
    assert caught.value.details["region"] == "CA"


@pytest.mark.parametrize(
    "to",
    [
        "",
        "+",
        "not a number",
        "0412345678",
        "+61123",
        "+1416555012",
        "+440000000000",
        "++61491570110",
        "+61491570110 ext. 5",
        "+61491570110;ext=1",
        "+61491570110 x5",
        "+61491570110#5",
        "+1-800-FLOWERS",
        "tel:+61491570110",
    ],
)
def test_parse_recipient_invalid(to):
    with pytest.raises(InvalidNumber) as caught:
        parse_recipient(to)
    assert caught.value.code == "invalid_number"


@pytest.mark.parametrize(
    ("to", "number_type"),
    [
        ("+611900123456", "premium_rate"),
        ("+611300123456", "shared_cost"),
        ("+611800123456", "toll_free"),
        ("+61290001234", "fixed_line"),
        ("+19005550123", "premium_rate"),
        ("+15005550006", "personal_number"),
        ("+448712345678", "premium_rate"),
        ("+44800123456", "toll_free"),
        ("+6493001234", "fixed_line"),
        ("+6480012345", "toll_free"),
    ],
)
def test_parse_recipient_refuses_numbers_an_sms_cannot_reach(to, number_type):
    with pytest.raises(InvalidNumber) as caught:
        parse_recipient(to)
    assert caught.value.details["to"] == "not_sms_capable"
    assert caught.value.details["number_type"] == number_type


@pytest.mark.parametrize("to", ["+18005550123", "+442079460123", "+61491570159", "+6421000000"])
def test_parse_recipient_accepts_us_toll_free_uk_landlines_and_mobiles(to):
    assert parse_recipient(to)[0] == to


def test_mask_number():
    assert mask_number("+61412345678") == "+61******678"
    assert mask_number("+12025550123") == "+1*******123"
    assert mask_number("+447400123456") == "+44*******456"
    assert "12345" not in mask_number("+61412345678")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("uk", "GB"),
        ("UK", "GB"),
        ("gb", "GB"),
        (" au ", "AU"),
        ("us", "US"),
        ("NZ", "NZ"),
        ("CA", None),
        ("", None),
    ],
)
def test_normalise_region(code, expected):
    assert normalise_region(code) == expected


# ---- audit -----------------------------------------------------------------------------------------


def account(pool_values: dict[str, int], held: int = 0, version: int = 3) -> Account:
    return Account(
        account_id="acct-a",
        plan="starter",
        credit_model="segment",
        home_region="AU",
        billing_anchor=date(2026, 1, 5),
        created_at=NOW,
        period_start=date(2026, 11, 5),
        next_refresh_at=datetime(2026, 12, 5, tzinfo=UTC),
        allowance=50,
        pools=pool_values,
        held=held,
        version=version,
    )


def record(version: int, index: int, kind: str, pool: str, amount: int, balance_after: int) -> LedgerRecord:
    return LedgerRecord(
        entry_id=f"acct-a:{version}:{index}",
        account_id="acct-a",
        kind=kind,
        pool=pool,
        amount=amount,
        balance_after=balance_after,
        created_at=NOW,
        op_id=f"op-{version}",
        reference={},
    )


def hold(status: str, credits: int, hold_id: str = "m1") -> Hold:
    return Hold(
        account_id="acct-a",
        message_id=hold_id,
        status=status,
        credits=credits,
        funding=(Funding(L.INCLUDED, credits),),
        period_start=date(2026, 11, 5),
        created_at=NOW,
        request_hash="h",
        message={},
    )


SOUND_ENTRIES = [
    record(1, 0, "grant", L.INCLUDED, 50, 50),
    record(2, 0, "purchase", AU, 100, 100),
    record(3, 0, "hold", L.INCLUDED, -50, 0),
    record(3, 1, "hold", AU, -2, 98),
]


def test_check_account_sound():
    holds = [hold("pending", 52), hold("posted", 9, "m0"), hold("voided", 4, "m-1")]
    assert check_account(account({L.INCLUDED: 0, AU: 98}, held=52), SOUND_ENTRIES, holds) == []


def test_check_account_orders_entries_by_version_not_by_listing_order():
    entries = list(reversed(SOUND_ENTRIES))
    assert check_account(account({L.INCLUDED: 0, AU: 98}, held=52), entries, [hold("pending", 52)]) == []


def test_check_account_orders_versions_numerically():
    # Version 10 must come after version 9 (a string sort would put "10" first).
    entries = [record(v, 0, "grant", AU, 1, v) for v in range(1, 12)]
    assert check_account(account({AU: 11}), entries, []) == []


def test_check_account_pool_entries_mismatch():
    problems = check_account(account({L.INCLUDED: 0, AU: 99}, held=52), SOUND_ENTRIES, [hold("pending", 52)])
    assert len(problems) == 1
    assert "purchased:AU = 99" in problems[0]
    assert "sum to 98" in problems[0]


def test_check_account_pool_without_entries():
    problems = check_account(
        account({L.INCLUDED: 0, AU: 98, US: 5}, held=52), SOUND_ENTRIES, [hold("pending", 52)]
    )
    assert problems == ["acct-a: pool purchased:US = 5 but its entries sum to 0"]


def test_check_account_entries_without_a_pool():
    problems = check_account(account({L.INCLUDED: 0}, held=52), SOUND_ENTRIES, [hold("pending", 52)])
    assert problems == ["acct-a: pool purchased:AU = 0 but its entries sum to 98"]


def test_check_account_wrong_balance_after_chain():
    entries = [*SOUND_ENTRIES[:3], record(3, 1, "hold", AU, -2, 97)]
    problems = check_account(account({L.INCLUDED: 0, AU: 98}, held=52), entries, [hold("pending", 52)])
    assert len(problems) == 1
    assert "acct-a:3:1" in problems[0]
    assert "97" in problems[0]


def test_check_account_held_mismatch():
    problems = check_account(account({L.INCLUDED: 0, AU: 98}, held=52), SOUND_ENTRIES, [hold("pending", 50)])
    assert problems == ["acct-a: held = 52 but open holds total 50"]
    # Ended holds do not count as open.
    problems = check_account(account({L.INCLUDED: 0, AU: 98}, held=52), SOUND_ENTRIES, [hold("posted", 52)])
    assert problems == ["acct-a: held = 52 but open holds total 0"]


def test_check_account_negative_pool():
    entries = [record(1, 0, "grant", AU, 5, 5), record(2, 0, "adjustment", AU, -7, -2)]
    problems = check_account(account({AU: -2}), entries, [])
    assert problems == ["acct-a: pool purchased:AU is negative (-2)"]


def test_check_account_negative_held():
    problems = check_account(account({}, held=-3), [], [])
    assert "acct-a: held is negative (-3)" in problems
