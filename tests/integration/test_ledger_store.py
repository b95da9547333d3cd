"""The DynamoDB ledger on moto: every movement atomic, idempotent by id, audited, and as cheap as designed."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from smscredits.adapters.ledger_reader import LedgerReader, encode_cursor
from smscredits.adapters.ledger_store import HoldDraft, LedgerStore
from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold
from smscredits.domain.audit import check_account
from smscredits.domain.errors import AccountExists, HoldEnded, InsufficientCredits, InvalidRequest
from smscredits.domain.ledger import Funding
from smscredits.domain.periods import period_containing, period_start_at
from tests.conftest import TABLE, Clock, RequestCounter, new_account

AU = "purchased:AU"
US = "purchased:US"
ACCT = "acct-1"


# ---- helpers ---------------------------------------------------------------------------------------


def scan(client: Any) -> list[dict[str, Any]]:
    """The whole table, in key order (to prove that a refused or duplicate operation wrote nothing)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": TABLE, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


def ledger_items(client: Any, account_id: str = ACCT) -> list[dict[str, Any]]:
    return [
        i for i in scan(client) if i["pk"]["S"] == f"ACCT#{account_id}" and i["sk"]["S"].startswith("LEDGER#")
    ]


def draft(hold_id: str, segments: int = 1, region: str = "AU") -> HoldDraft:
    return HoldDraft(
        hold_id=hold_id,
        segments=segments,
        region=region,
        request_hash=f"hash-{hold_id}",
        message={"to": "+61491570156", "body": "hello", "region": region, "segments": segments},
    )


def sound(reader: LedgerReader, account_id: str = ACCT) -> Account:
    """The account as stored, after checking that its pools, entries and holds agree."""
    account, entries, holds = reader.partition(account_id)
    assert check_account(account, entries, holds) == []
    return account


def nonzero(pools: dict[str, int] | Any) -> dict[str, int]:
    return {pool: value for pool, value in dict(pools).items() if value}


def reset(store: LedgerStore, clock: Clock, account_id: str = ACCT) -> tuple[Account, bool]:
    """The refresh for the period that contains the clock's day (anchor: the 5th)."""
    start, next_start = period_containing(date(2026, 1, 5), clock.now.date())
    return store.reset_allowance(account_id, period_start=start, next_refresh_at=period_start_at(next_start))


@pytest.fixture
def reader(dynamodb: Any) -> LedgerReader:
    return LedgerReader(TABLE, client=dynamodb)


@pytest.fixture(autouse=True)
def audit_every_account(dynamodb: Any, reader: LedgerReader) -> Iterator[None]:
    """Whatever a test did, every account it leaves behind passes the ledger check."""
    yield
    for account_id in reader.account_ids():
        sound(reader, account_id)


@pytest.fixture
def account(store: LedgerStore) -> Account:
    """A starter account (50 included credits) created through the store, whose cache is now warm."""
    return store.create_account(new_account(ACCT), op_id=f"create:{ACCT}", reference={"actor": "support"})


@pytest.fixture
def funded(store: LedgerStore, account: Account) -> Account:
    """50 included + 100 purchased:AU."""
    after, applied = store.grant(
        ACCT, AU, 100, op_id="pack:cs_1", kind="purchase", reference={"session": "cs_1"}
    )
    assert applied
    return after


# ---- create_account --------------------------------------------------------------------------------


def test_create_account_grants_the_first_allowance(store, dynamodb, reader):
    created = store.create_account(new_account(ACCT), op_id="create:acct-1", reference={"actor": "support"})
    assert nonzero(created.pools) == {L.INCLUDED: 50}
    assert created.version == 1
    stored = sound(reader)
    assert nonzero(stored.pools) == {L.INCLUDED: 50}
    assert stored.held == 0
    assert stored.version == 1
    _, entries, holds = reader.partition(ACCT)
    assert [(e.kind, e.pool, e.amount, e.balance_after) for e in entries] == [("grant", L.INCLUDED, 50, 50)]
    assert entries[0].reference == {"actor": "support"}
    assert holds == []


def test_create_legacy_account_grants_into_the_legacy_pool(store, reader):
    store.create_account(new_account("acct-l", model="legacy"), op_id="create:acct-l", reference={})
    assert nonzero(sound(reader, "acct-l").pools) == {L.LEGACY: 50}


def test_second_create_is_refused_and_writes_nothing(store, dynamodb, account):
    before = scan(dynamodb)
    with pytest.raises(AccountExists):
        store.create_account(new_account(ACCT, plan="growth"), op_id="create:again", reference={})
    assert scan(dynamodb) == before


# ---- grant -----------------------------------------------------------------------------------------


def test_grant_is_applied_once_per_op_id(store, dynamodb, reader, account):
    after, applied = store.grant(
        ACCT, AU, 100, op_id="pack:cs_1", kind="purchase", reference={"session": "cs_1"}
    )
    assert applied
    assert nonzero(after.pools) == {L.INCLUDED: 50, AU: 100}
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50, AU: 100}
    before = scan(dynamodb)

    again, applied = store.grant(
        ACCT, AU, 100, op_id="pack:cs_1", kind="purchase", reference={"session": "cs_1"}
    )

    assert not applied
    assert nonzero(again.pools) == {L.INCLUDED: 50, AU: 100}
    assert scan(dynamodb) == before
    assert len(before) == len(scan(dynamodb))
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50, AU: 100}
    grants = [i for i in ledger_items(dynamodb) if i["kind"]["S"] == "purchase"]
    assert len(grants) == 1


def test_duplicate_grant_from_a_stale_store_returns_the_current_balance(store, dynamodb, clock, funded):
    other = LedgerStore(TABLE, client=dynamodb, clock=clock)
    other.grant(ACCT, US, 5, op_id="g-other")
    before = scan(dynamodb)
    after, applied = store.grant(ACCT, AU, 100, op_id="pack:cs_1", kind="purchase")
    assert not applied
    assert nonzero(after.pools) == {L.INCLUDED: 50, AU: 100, US: 5}
    assert scan(dynamodb) == before


def test_duplicate_grant_from_a_cold_store_is_still_a_duplicate(store, dynamodb, clock, funded):
    before = scan(dynamodb)
    other = LedgerStore(TABLE, client=dynamodb, clock=clock)
    after, applied = other.grant(ACCT, AU, 100, op_id="pack:cs_1", kind="purchase")
    assert not applied
    assert nonzero(after.pools) == {L.INCLUDED: 50, AU: 100}
    assert scan(dynamodb) == before


# ---- reserve ---------------------------------------------------------------------------------------


def test_reserve_takes_included_first(store, reader, funded):
    hold, created = store.reserve(ACCT, draft("m1", segments=3))
    assert created
    assert hold.status == "pending"
    assert hold.credits == 3
    assert hold.funding == (Funding(L.INCLUDED, 3),)
    stored = sound(reader)
    assert nonzero(stored.pools) == {L.INCLUDED: 47, AU: 100}
    assert stored.held == 3


def test_reserve_splits_across_included_and_the_region_pool(store, reader, funded):
    hold, created = store.reserve(ACCT, draft("m1", segments=53))
    assert created
    assert hold.funding == (Funding(L.INCLUDED, 50), Funding(AU, 3))
    stored = sound(reader)
    assert nonzero(stored.pools) == {AU: 97}
    assert stored.held == 53
    _, entries, holds = reader.partition(ACCT)
    assert [(e.kind, e.pool, e.amount, e.balance_after) for e in entries if e.kind == "hold"] == [
        ("hold", L.INCLUDED, -50, 0),
        ("hold", AU, -3, 97),
    ]
    assert [(h.hold_id, h.status, h.credits) for h in holds] == [("m1", "pending", 53)]


def test_reserve_never_uses_another_regions_pool(store, dynamodb, funded):
    store.reserve(ACCT, draft("m1", segments=50))  # included is now empty
    before = scan(dynamodb)
    with pytest.raises(InsufficientCredits):
        store.reserve(ACCT, draft("m2", segments=1, region="US"))
    assert scan(dynamodb) == before


def test_legacy_account_reserves_from_the_legacy_pool_at_its_flat_rate(dynamodb, clock, reader):
    store = LedgerStore(
        TABLE, client=dynamodb, clock=clock, legacy_rates={"AU": 2, "US": 1, "GB": 3, "NZ": 4}
    )
    store.create_account(new_account("acct-l", model="legacy"), op_id="create:acct-l", reference={})
    hold, created = store.reserve("acct-l", draft("m1", segments=5))
    assert created
    assert hold.credits == 2
    assert hold.funding == (Funding(L.LEGACY, 2),)
    stored = sound(reader, "acct-l")
    assert nonzero(stored.pools) == {L.LEGACY: 48}
    assert stored.held == 2


def test_insufficient_credits_writes_nothing(store, dynamodb, reader, funded):
    before = scan(dynamodb)
    with pytest.raises(InsufficientCredits) as caught:
        store.reserve(ACCT, draft("m1", segments=151))
    assert caught.value.details["needed"] == 151
    assert caught.value.details["pools"] == {L.INCLUDED: 50, AU: 100}
    assert scan(dynamodb) == before
    # The exact fit still works afterwards.
    store.reserve(ACCT, draft("m2", segments=150))
    stored = sound(reader)
    assert nonzero(stored.pools) == {}
    assert stored.held == 150


def test_duplicate_hold_id_returns_the_original_hold(store, dynamodb, reader, funded):
    first, created = store.reserve(ACCT, draft("m1", segments=3))
    assert created
    before = scan(dynamodb)

    again, created = store.reserve(ACCT, draft("m1", segments=3))

    assert not created
    assert (again.hold_id, again.status, again.credits, again.funding) == (
        first.hold_id,
        first.status,
        first.credits,
        first.funding,
    )
    assert again.request_hash == first.request_hash
    assert scan(dynamodb) == before
    assert sound(reader).held == 3


def test_duplicate_hold_id_with_no_credits_left_still_returns_the_original(store, dynamodb, funded):
    """A retried send after the hold took the last credit is a duplicate, not a 402."""
    first, _ = store.reserve(ACCT, draft("m1", segments=150))
    before = scan(dynamodb)
    again, created = store.reserve(ACCT, draft("m1", segments=150))
    assert not created
    assert again.hold_id == first.hold_id
    assert again.funding == first.funding
    assert scan(dynamodb) == before


# ---- post ------------------------------------------------------------------------------------------


def test_post_charges_the_hold(store, dynamodb, reader, funded):
    hold, _ = store.reserve(ACCT, draft("m1", segments=53))
    posted = store.post(hold, {"sid": "SM1"})
    assert posted.status == "posted"
    assert posted.provider == {"sid": "SM1"}
    stored = sound(reader)
    assert stored.held == 0
    assert nonzero(stored.pools) == {AU: 97}
    _, entries, holds = reader.partition(ACCT)
    posts = [e for e in entries if e.kind == "post"]
    assert [(e.pool, e.amount, e.balance_after) for e in posts] == [(L.INCLUDED, 0, 0), (AU, 0, 97)]
    assert all(e.reference == {"message_id": "m1", "sid": "SM1"} for e in posts)
    assert [h.status for h in holds] == ["posted"]

    before = scan(dynamodb)
    again = store.post(hold, {"sid": "SM1"})
    assert again.status == "posted"
    assert again.hold_id == "m1"
    assert scan(dynamodb) == before

    with pytest.raises(HoldEnded) as caught:
        store.void(hold)
    assert caught.value.details == {"message_id": "m1", "status": "posted"}
    assert scan(dynamodb) == before


# ---- void ------------------------------------------------------------------------------------------


def test_void_returns_credits_to_the_pools_they_came_from(store, dynamodb, reader, funded):
    store.reserve(ACCT, draft("m0", segments=10))
    hold, _ = store.reserve(ACCT, draft("m1", segments=45))  # 40 included + 5 AU
    assert hold.funding == (Funding(L.INCLUDED, 40), Funding(AU, 5))
    voided = store.void(hold, {"error": 30003})
    assert voided.status == "voided"
    stored = sound(reader)
    assert nonzero(stored.pools) == {L.INCLUDED: 40, AU: 100}
    assert stored.held == 10

    before = scan(dynamodb)
    again = store.void(hold)
    assert again.status == "voided"
    assert scan(dynamodb) == before

    with pytest.raises(HoldEnded) as caught:
        store.post(hold)
    assert caught.value.details["status"] == "voided"
    assert scan(dynamodb) == before


def test_void_after_a_refresh_lapses_the_included_part(store, dynamodb, reader, clock, funded):
    hold, _ = store.reserve(ACCT, draft("m1", segments=53))  # 50 included + 3 AU
    clock.advance(days=25)
    _, applied = reset(store, clock)
    assert applied
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50, AU: 97}

    store.void(hold)

    stored = sound(reader)
    assert nonzero(stored.pools) == {L.INCLUDED: 50, AU: 100}
    assert stored.held == 0
    _, entries, _ = reader.partition(ACCT)
    last = sorted(entries, key=lambda e: int(e.entry_id.split(":")[1]))[-1]
    version = last.entry_id.split(":")[1]
    voids = sorted((e for e in entries if e.entry_id.split(":")[1] == version), key=lambda e: e.entry_id)
    assert [(e.kind, e.pool, e.amount, e.balance_after) for e in voids] == [
        ("void", L.INCLUDED, 50, 100),
        ("expiry", L.INCLUDED, -50, 50),
        ("void", AU, 3, 100),
    ]


# ---- adjust ----------------------------------------------------------------------------------------


def test_adjust_up_down_refused_and_duplicate(store, dynamodb, reader, funded):
    _, outcome = store.adjust(ACCT, AU, 10, op_id="adj-1", actor="support@x", reason="goodwill")
    assert outcome == {"pool": AU, "credits": 10, "balance_after": 110}
    _, outcome = store.adjust(ACCT, AU, -30, op_id="adj-2", actor="support@x", reason="mistake")
    assert outcome == {"pool": AU, "credits": -30, "balance_after": 80}
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50, AU: 80}

    before = scan(dynamodb)
    with pytest.raises(InvalidRequest) as caught:
        store.adjust(ACCT, AU, -81, op_id="adj-3", actor="support@x", reason="too much")
    assert caught.value.details == {"pool": AU, "available": 80, "credits": -81}
    assert scan(dynamodb) == before

    _, outcome = store.adjust(ACCT, AU, 10, op_id="adj-1", actor="support@x", reason="goodwill")
    assert outcome == {"pool": AU, "credits": 10, "balance_after": 110}  # the original outcome
    assert scan(dynamodb) == before

    entries = [e for e in reader.partition(ACCT)[1] if e.kind == "adjustment"]
    assert sorted(e.amount for e in entries) == [-30, 10]
    assert {json.dumps(dict(e.reference), sort_keys=True) for e in entries} == {
        json.dumps({"actor": "support@x", "reason": "goodwill"}, sort_keys=True),
        json.dumps({"actor": "support@x", "reason": "mistake"}, sort_keys=True),
    }


def test_adjust_replay_after_emptying_the_pool_answers_the_original(store, dynamodb, funded):
    """The replay's plan would go below zero today; it is still the same adjustment, not a refusal."""
    _, outcome = store.adjust(ACCT, AU, -100, op_id="adj-z", actor="support@x", reason="refund")
    assert outcome == {"pool": AU, "credits": -100, "balance_after": 0}
    before = scan(dynamodb)
    after, again = store.adjust(ACCT, AU, -100, op_id="adj-z", actor="support@x", reason="refund")
    assert again == outcome
    assert nonzero(after.pools) == {L.INCLUDED: 50}
    assert scan(dynamodb) == before


# ---- reset_allowance -------------------------------------------------------------------------------


def test_reset_expires_leftovers_then_grants_once_per_period(store, dynamodb, reader, clock, funded):
    store.reserve(ACCT, draft("m1", segments=20))  # 30 included left
    clock.advance(days=25)  # 2026-12-05
    after, applied = reset(store, clock)
    assert applied
    assert after.period_start.isoformat() == "2026-12-05"
    stored = sound(reader)
    assert nonzero(stored.pools) == {L.INCLUDED: 50, AU: 100}
    assert stored.held == 20
    assert stored.period_start.isoformat() == "2026-12-05"
    entries = reader.partition(ACCT)[1]
    refresh = [e for e in entries if e.reference == {"period": "2026-12-05"}]
    assert sorted((e.kind, e.amount, e.balance_after) for e in refresh) == [
        ("expiry", -30, 0),
        ("grant", 50, 50),
    ]

    before = scan(dynamodb)
    again, applied = reset(store, clock)
    assert not applied
    assert scan(dynamodb) == before
    assert nonzero(again.pools) == {L.INCLUDED: 50, AU: 100}


def test_reset_for_the_current_period_changes_nothing(store, dynamodb, clock, funded):
    before = scan(dynamodb)
    after, applied = reset(store, clock)  # the account was created in this period
    assert not applied
    assert after.period_start.isoformat() == "2026-11-05"
    assert scan(dynamodb) == before


def test_reset_of_a_legacy_account_tops_up(store, reader, clock):
    store.create_account(new_account("acct-l", model="legacy"), op_id="create:acct-l", reference={})
    store.reserve("acct-l", draft("m1"))
    clock.advance(days=25)
    _, applied = reset(store, clock, "acct-l")
    assert applied
    stored = sound(reader, "acct-l")
    assert nonzero(stored.pools) == {L.LEGACY: 99}
    assert all(e.kind != "expiry" for e in reader.partition("acct-l")[1])


# ---- entries ---------------------------------------------------------------------------------------


def test_every_entry_has_the_fields_of_a_statement(store, dynamodb, clock, funded):
    hold, _ = store.reserve(ACCT, draft("m1", segments=40))
    store.post(hold, {"sid": "SM1"})
    other, _ = store.reserve(ACCT, draft("m2", segments=2))  # 10 included left to lapse at the refresh
    store.void(other)
    store.adjust(ACCT, AU, -1, op_id="adj-1", actor="support@x", reason="test")
    clock.advance(days=25)
    reset(store, clock)
    items = ledger_items(dynamodb)
    assert {i["kind"]["S"] for i in items} == {
        "grant",
        "purchase",
        "hold",
        "post",
        "void",
        "adjustment",
        "expiry",
    }
    for item in items:
        for name in (
            "kind",
            "pool",
            "amount",
            "balance_after",
            "created_at",
            "reference",
            "entry_id",
            "op_id",
        ):
            assert name in item, (name, item)
        assert item["kind"]["S"] in L.ENTRY_KINDS
        assert item["pool"]["S"] in L.ALL_POOLS
        assert "N" in item["amount"]
        assert "N" in item["balance_after"]
        assert "M" in item["reference"]


# ---- statement -------------------------------------------------------------------------------------


@pytest.fixture
def history(store: LedgerStore, clock: Clock, account: Account) -> list[str]:
    """Eight entries written an hour apart; returns their entry ids newest first."""
    clock.advance(hours=1)
    store.grant(ACCT, AU, 100, op_id="pack:cs_1", kind="purchase")
    clock.advance(hours=1)
    store.reserve(ACCT, draft("m1", segments=3))
    clock.advance(hours=1)
    m2, _ = store.reserve(ACCT, draft("m2", segments=60))
    clock.advance(hours=1)
    store.void(m2)
    clock.advance(hours=1)
    store.post(store.get_hold(ACCT, "m1"))
    return [
        f"{ACCT}:{version}:{index}"
        for version, index in [(6, 0), (5, 1), (5, 0), (4, 1), (4, 0), (3, 0), (2, 0), (1, 0)]
    ]


def read_all(reader: LedgerReader, limit: int, **filters: Any) -> tuple[list[str], list[int]]:
    ids: list[str] = []
    sizes: list[int] = []
    cursor = None
    for _ in range(50):
        page, cursor = reader.statement(ACCT, limit=limit, cursor=cursor, **filters)
        assert len(page) <= limit
        ids.extend(e.entry_id for e in page)
        sizes.append(len(page))
        if cursor is None:
            return ids, sizes
    raise AssertionError("the cursor never ran out")


@pytest.mark.parametrize("limit", [1, 3, 8, 100])
def test_statement_pages_newest_first(reader, history, limit):
    ids, _ = read_all(reader, limit)
    assert ids == history


def test_statement_page_content(reader, history):
    page, cursor = reader.statement(ACCT, limit=3)
    assert cursor is not None
    assert [(e.kind, e.pool, e.amount, e.balance_after) for e in page] == [
        ("post", L.INCLUDED, 0, 47),
        ("void", AU, 13, 100),
        ("void", L.INCLUDED, 47, 47),
    ]
    times = [e.created_at for e in reader.statement(ACCT, limit=100)[0]]
    assert times == sorted(times, reverse=True)


def test_statement_filters_by_kind(reader, history):
    ids, _ = read_all(reader, 1, kinds=("hold",))
    assert ids == [f"{ACCT}:4:1", f"{ACCT}:4:0", f"{ACCT}:3:0"]
    ids, _ = read_all(reader, 2, kinds=("grant", "purchase"))
    assert ids == [f"{ACCT}:2:0", f"{ACCT}:1:0"]
    ids, _ = read_all(reader, 5, kinds=("clawback",))
    assert ids == []


def test_statement_filters_by_dates(reader, clock, history):
    start = clock.now - timedelta(hours=2)  # the hour m2 was reserved
    end = clock.now - timedelta(hours=1)  # up to (not including) the void
    page, cursor = reader.statement(ACCT, limit=10, start=start, end=end)
    assert [e.entry_id for e in page] == [f"{ACCT}:4:1", f"{ACCT}:4:0"]
    assert cursor is None
    assert all(start <= e.created_at < end for e in page)
    ids, _ = read_all(reader, 1, start=start, kinds=("void",))
    assert ids == [f"{ACCT}:5:1", f"{ACCT}:5:0"]


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "e30",  # "{}" without padding
        _b64([1, 2]),
        _b64("text"),
        _b64({"pk": {"S": "ACCT#acct-2"}, "sk": {"S": "LEDGER#000000000001#00"}}),  # another account
        _b64({"pk": {"S": "ACCT#acct-1"}, "sk": {"S": "HOLD#m1"}}),  # not a ledger key
        _b64({"pk": {"S": "ACCT#acct-1"}, "sk": {"N": "1"}}),
        _b64({"pk": {"S": "ACCT#acct-1"}, "sk": {"S": 5}}),
        _b64({"pk": {"S": "ACCT#acct-1"}, "sk": {"S": "LEDGER#000000000001#00", "N": "1"}}),
        _b64({"pk": {"S": "ACCT#acct-1", "B": "AA=="}, "sk": {"S": "LEDGER#000000000001#00"}}),
    ],
)
def test_statement_refuses_a_bad_cursor(reader, history, cursor):
    with pytest.raises(InvalidRequest) as caught:
        reader.statement(ACCT, limit=2, cursor=cursor)
    assert caught.value.details == {"cursor": "invalid"}


def test_statement_cursor_of_another_account_is_refused(store, reader, history):
    store.create_account(new_account("acct-2"), op_id="create:acct-2", reference={})
    store.grant("acct-2", AU, 5, op_id="g2")
    _, cursor = reader.statement("acct-2", limit=1)
    assert cursor is not None
    with pytest.raises(InvalidRequest):
        reader.statement(ACCT, limit=1, cursor=cursor)


def test_statement_accepts_its_own_cursor_format(reader, history):
    cursor = encode_cursor({"pk": {"S": f"ACCT#{ACCT}"}, "sk": {"S": "LEDGER#000000000005#00"}})
    page, _ = reader.statement(ACCT, limit=10, cursor=cursor)
    assert [e.entry_id for e in page] == history[3:]


# ---- stale caches ----------------------------------------------------------------------------------


def test_two_stores_alternating_stay_correct(store, dynamodb, clock, reader, funded):
    other = LedgerStore(TABLE, client=dynamodb, clock=clock)
    stores = [store, other]
    holds: list[Hold] = []
    for n in range(30):
        hold, created = stores[n % 2].reserve(ACCT, draft(f"m{n}", segments=5))
        assert created
        holds.append(hold)
        if n % 10 == 9:
            assert sound(reader).held == 5 * (n + 1)
    with pytest.raises(InsufficientCredits):
        stores[0].reserve(ACCT, draft("m-last", segments=1))
    with pytest.raises(InsufficientCredits):
        stores[1].reserve(ACCT, draft("m-last", segments=1))
    for n, hold in enumerate(holds):
        if n % 3 == 0:
            stores[(n + 1) % 2].void(hold)
        else:
            stores[n % 2].post(hold)
    stored = sound(reader)
    assert stored.held == 0
    voided = sum(5 for n in range(30) if n % 3 == 0)
    assert sum(stored.pools.values()) == voided
    # Both stores agree with the table and with each other.
    a, _ = stores[0].grant(ACCT, US, 1, op_id="g-a")
    b, _ = stores[1].grant(ACCT, US, 1, op_id="g-b")
    assert nonzero(b.pools) == nonzero(sound(reader).pools)
    assert b.version == a.version + 1


def test_stale_cache_refusal_is_rechecked_against_the_table(store, dynamodb, clock, reader, account):
    """A store whose cache says "empty" must not refuse a reserve the table can pay for."""
    store.reserve(ACCT, draft("m1", segments=50))
    other = LedgerStore(TABLE, client=dynamodb, clock=clock)
    other.grant(ACCT, AU, 10, op_id="g1")
    hold, created = store.reserve(ACCT, draft("m2", segments=10))
    assert created
    assert hold.funding == (Funding(AU, 10),)


# ---- request counts --------------------------------------------------------------------------------


def test_warm_reserve_post_void_cost_one_request_each(store, counter: RequestCounter, funded):
    counter.reset()
    hold, _ = store.reserve(ACCT, draft("m1", segments=2))
    assert counter.calls == ["TransactWriteItems"]
    assert counter.reads == 0

    counter.reset()
    store.post(hold)
    assert counter.calls == ["TransactWriteItems"]

    other, _ = store.reserve(ACCT, draft("m2", segments=2))
    counter.reset()
    store.void(other)
    assert counter.calls == ["TransactWriteItems"]
    assert counter.reads == 0


def test_stale_reserve_costs_two_requests_and_no_read(store, dynamodb, clock, counter, reader, funded):
    other = LedgerStore(TABLE, client=dynamodb, clock=clock)
    other.grant(ACCT, US, 5, op_id="g-other")  # store's cached version is now one behind
    counter.reset()
    _, created = store.reserve(ACCT, draft("m1", segments=2))
    assert created
    assert counter.calls == ["TransactWriteItems", "TransactWriteItems"]
    assert counter.reads == 0
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 48, AU: 100, US: 5}


def test_cold_reserve_reads_once(dynamodb, clock, counter, funded):
    cold = LedgerStore(TABLE, client=dynamodb, clock=clock)
    counter.reset()
    cold.reserve(ACCT, draft("m1"))
    assert counter.calls == ["GetItem", "TransactWriteItems"]
    counter.reset()
    cold.reserve(ACCT, draft("m2"))
    assert counter.calls == ["TransactWriteItems"]


def test_duplicate_grant_costs_one_request(store, counter, funded):
    counter.reset()
    _, applied = store.grant(ACCT, AU, 100, op_id="pack:cs_1", kind="purchase")
    assert not applied
    assert counter.calls == ["TransactWriteItems"]


# ---- faults: conflicts, throttling and a timeout after the write landed --------------------------


class FaultyClient:
    """The real client, except that transact_write_items follows a script of faults first.

    Each fault is ("raise", exception), failing without writing, or ("lost", exception), performing the
    real write and then raising as if the reply had been lost on the way back.
    """

    def __init__(self, client: Any, faults: list[tuple[str, Exception]]) -> None:
        self._client = client
        self.faults = list(faults)
        self.transactions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        if self.faults:
            mode, error = self.faults.pop(0)
            if mode == "lost":
                self._client.transact_write_items(**kwargs)
            raise error
        return self._client.transact_write_items(**kwargs)


def conflict(items: int = 3) -> ClientError:
    reasons = [{"Code": "TransactionConflict", "Message": "conflict"}] + [{"Code": "None"}] * (items - 1)
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": reasons,
        },
        "TransactWriteItems",
    )


def throttled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
        "TransactWriteItems",
    )


def timeout() -> ReadTimeoutError:
    return ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")


@pytest.fixture
def faulty(dynamodb: Any, clock: Clock, funded: Account) -> tuple[FaultyClient, LedgerStore]:
    client = FaultyClient(dynamodb, [])
    faulty_store = LedgerStore(TABLE, client=client, clock=clock)
    faulty_store.get_account(ACCT)  # warm
    return client, faulty_store


@pytest.mark.parametrize("fault", ["conflict", "throttled", "lost"])
def test_grant_survives_a_fault_exactly_once(faulty, reader, dynamodb, fault):
    client, faulty_store = faulty
    client.faults = [
        {"conflict": ("raise", conflict()), "throttled": ("raise", throttled())}.get(
            fault, ("lost", timeout())
        )
    ]
    after, applied = faulty_store.grant(ACCT, AU, 25, op_id="pack:cs_2", kind="purchase")
    assert applied  # this call's grant landed, even if the reply to it was lost
    assert nonzero(after.pools) == {L.INCLUDED: 50, AU: 125}
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50, AU: 125}
    assert len([i for i in ledger_items(dynamodb) if i["op_id"]["S"] == "pack:cs_2"]) == 1
    assert client.transactions == 2


@pytest.mark.parametrize("fault", ["conflict", "throttled", "lost"])
def test_reserve_survives_a_fault_exactly_once(faulty, reader, fault):
    client, faulty_store = faulty
    client.faults = [
        {"conflict": ("raise", conflict()), "throttled": ("raise", throttled())}.get(
            fault, ("lost", timeout())
        )
    ]
    hold, created = faulty_store.reserve(ACCT, draft("m1", segments=60))
    assert created
    assert hold.funding == (Funding(L.INCLUDED, 50), Funding(AU, 10))
    stored = sound(reader)
    assert nonzero(stored.pools) == {AU: 90}
    assert stored.held == 60
    assert len(reader.partition(ACCT)[2]) == 1


def test_reserve_of_the_last_credits_with_a_lost_reply_is_not_a_402(faulty, reader):
    """The retry after a lost reply finds the pools empty because of its own hold. It must say so."""
    client, faulty_store = faulty
    client.faults = [("lost", timeout())]
    hold, created = faulty_store.reserve(ACCT, draft("m1", segments=150))
    assert created
    assert hold.credits == 150
    stored = sound(reader)
    assert nonzero(stored.pools) == {}
    assert stored.held == 150


def test_adjust_to_zero_with_a_lost_reply_reports_its_outcome(faulty, reader):
    client, faulty_store = faulty
    client.faults = [("lost", timeout())]
    _, outcome = faulty_store.adjust(ACCT, AU, -100, op_id="adj-1", actor="support@x", reason="refund")
    assert outcome == {"pool": AU, "credits": -100, "balance_after": 0}
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50}


@pytest.mark.parametrize("ending", ["post", "void"])
@pytest.mark.parametrize("fault", ["conflict", "throttled", "lost"])
def test_post_and_void_survive_a_fault_exactly_once(faulty, reader, dynamodb, ending, fault):
    client, faulty_store = faulty
    hold, _ = faulty_store.reserve(ACCT, draft("m1", segments=60))
    client.faults = [
        {"conflict": ("raise", conflict()), "throttled": ("raise", throttled())}.get(
            fault, ("lost", timeout())
        )
    ]
    ended = getattr(faulty_store, ending)(hold)
    assert ended.status == {"post": "posted", "void": "voided"}[ending]
    stored = sound(reader)
    assert stored.held == 0
    expected = {AU: 90} if ending == "post" else {L.INCLUDED: 50, AU: 100}
    assert nonzero(stored.pools) == expected
    kinds = [i["kind"]["S"] for i in ledger_items(dynamodb)]
    assert kinds.count(ending) == 2  # one entry per funding pool, written once


def test_reset_with_a_lost_reply_reports_applied(faulty, reader, clock):
    client, faulty_store = faulty
    clock.advance(days=25)
    client.faults = [("lost", timeout())]
    after, applied = reset(faulty_store, clock)
    assert applied
    assert after.period_start.isoformat() == "2026-12-05"
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50, AU: 100}
