"""The ledger on DynamoDB (moto): items as stored, the statement's cursor format, what each movement costs in
requests, and faults (conflicts, throttling, a timeout after the write landed). The rules themselves are
tests/contract/test_ledger_contract.py's, held against both ledgers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from smscredits.adapters.dynamo.codec import ledger_at
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.reader import DynamoStatements, encode_cursor
from smscredits.domain import auto_recharge as AR
from smscredits.domain import ledger as L
from smscredits.domain.account import Account
from smscredits.domain.audit import check_account
from smscredits.domain.errors import InvalidRequest
from smscredits.domain.ledger import Funding
from smscredits.domain.orders import Paid
from smscredits.domain.periods import iso
from tests.conftest import TABLE, Clock, RequestCounter, new_account
from tests.ledgers import ACCT, buy, hold_request, nonzero, pack_order, refresh

AU = "purchased:AU"
US = "purchased:US"


def scan(client: Any) -> list[dict[str, Any]]:
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


def sound(reader: DynamoStatements, account_id: str = ACCT) -> Account:
    account, entries, holds = reader.partition(account_id)
    assert check_account(account, entries, holds) == []
    return account


@pytest.fixture
def ledger(dynamodb: Any, clock: Clock) -> DynamoLedger:
    return DynamoLedger(TABLE, client=dynamodb, clock=clock)


@pytest.fixture
def reader(dynamodb: Any) -> DynamoStatements:
    return DynamoStatements(TABLE, client=dynamodb)


@pytest.fixture(autouse=True)
def audit_every_account(dynamodb: Any, reader: DynamoStatements) -> Iterator[None]:
    """Whatever a test did, every account it leaves behind passes the ledger check."""
    yield
    for account_id in reader.account_ids():
        sound(reader, account_id)


@pytest.fixture
def funded(ledger: DynamoLedger) -> Account:
    """A starter account (50 included credits) with one AU pack (100 credits); the ledger's view is warm."""
    ledger.create_account(new_account(ACCT), reference={"actor": "support"})
    assert buy(ledger)
    return ledger.get_account(ACCT)


# ---- items ------------------------------------------------------------------------------------------


def test_every_entry_has_the_fields_of_a_statement(ledger, dynamodb, clock, funded):
    hold, _ = ledger.hold(ACCT, hold_request("m1", segments=40))
    ledger.post(hold, {"sid": "SM1"})
    other, _ = ledger.hold(ACCT, hold_request("m2", segments=2))  # 10 included left to lapse at the refresh
    ledger.void(other)
    ledger.adjust(ACCT, AU, -1, op_id="adj-1", actor="support@x", reason="test")
    clock.advance(days=25)
    refresh(ledger, clock)
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
        assert item["pool"]["S"] in (*L.SEGMENT_POOLS, L.LEGACY)
        assert "N" in item["amount"]
        assert "N" in item["balance_after"]
        assert "M" in item["reference"]


# ---- the statement's cursor --------------------------------------------------------------------------


@pytest.fixture
def history(ledger: DynamoLedger, clock: Clock) -> list[str]:
    """Eight entries written an hour apart (as in the contract tests); returns their entry ids newest first."""
    ledger.create_account(new_account(ACCT), reference={"actor": "support"})
    clock.advance(hours=1)
    buy(ledger)
    clock.advance(hours=1)
    ledger.hold(ACCT, hold_request("m1", segments=3))
    clock.advance(hours=1)
    m2, _ = ledger.hold(ACCT, hold_request("m2", segments=60))
    clock.advance(hours=1)
    ledger.void(m2)
    clock.advance(hours=1)
    ledger.post(ledger.get_hold(ACCT, "m1"))
    return [
        f"{ACCT}:{version}:{index}"
        for version, index in [(6, 0), (5, 1), (5, 0), (4, 1), (4, 0), (3, 0), (2, 0), (1, 0)]
    ]


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
        _b64({"pk": {"S": "ACCT#acct-1"}, "sk": {"S": "LEDGER#000000000001#00"}}),  # no ledger_at
        _b64({"pk": {"S": "ACCT#acct-1"}, "sk": {"S": "LEDGER#000000000001#00"}, "ledger_at": {"N": "1"}}),
    ],
)
def test_statement_refuses_a_bad_cursor(reader, history, cursor):
    with pytest.raises(InvalidRequest) as caught:
        reader.statement(ACCT, limit=2, cursor=cursor)
    assert caught.value.details == {"cursor": "invalid"}


def test_statement_accepts_its_own_cursor_format(reader, history):
    # Entry 5:0 (the void) was written four hours in: LedgerByTime's key is its time, version and index.
    at = ledger_at(iso(datetime(2026, 11, 10, 16, 0, tzinfo=UTC)), 5, 0)
    cursor = encode_cursor(
        {"pk": {"S": f"ACCT#{ACCT}"}, "sk": {"S": "LEDGER#000000000005#00"}, "ledger_at": {"S": at}}
    )
    page, _ = reader.statement(ACCT, limit=10, cursor=cursor)
    assert [e.entry_id for e in page] == history[3:]


# ---- request counts --------------------------------------------------------------------------------


def test_warm_hold_post_void_cost_one_request_each(ledger, counter: RequestCounter, funded):
    counter.reset()
    hold, _ = ledger.hold(ACCT, hold_request("m1", segments=2))
    assert counter.calls == ["TransactWriteItems"]
    assert counter.reads == 0

    counter.reset()
    ledger.post(hold)
    assert counter.calls == ["TransactWriteItems"]

    other, _ = ledger.hold(ACCT, hold_request("m2", segments=2))
    counter.reset()
    ledger.void(other)
    assert counter.calls == ["TransactWriteItems"]
    assert counter.reads == 0


def test_stale_hold_costs_two_requests_and_no_read(ledger, dynamodb, clock, counter, reader, funded):
    other = DynamoLedger(TABLE, client=dynamodb, clock=clock)
    other.adjust(
        ACCT, US, 5, op_id="adj-other", actor="support", reason="test"
    )  # `ledger`'s view is now stale
    counter.reset()
    _, created = ledger.hold(ACCT, hold_request("m1", segments=2))
    assert created
    assert counter.calls == ["TransactWriteItems", "TransactWriteItems"]
    assert counter.reads == 0
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 48, AU: 100, US: 5}


def test_cold_hold_reads_once(dynamodb, clock, counter, funded):
    cold = DynamoLedger(TABLE, client=dynamodb, clock=clock)
    counter.reset()
    cold.hold(ACCT, hold_request("m1"))
    assert counter.calls == ["GetItem", "TransactWriteItems"]
    counter.reset()
    cold.hold(ACCT, hold_request("m2"))
    assert counter.calls == ["TransactWriteItems"]


def test_duplicate_grant_costs_one_request(ledger, counter, funded):
    counter.reset()
    assert not ledger.grant_purchase(Paid(pack_order(), "pi_1"), source="test")
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
def faulty(dynamodb: Any, clock: Clock, funded: Account) -> tuple[FaultyClient, DynamoLedger]:
    client = FaultyClient(dynamodb, [])
    faulty_ledger = DynamoLedger(TABLE, client=client, clock=clock, sleep=lambda seconds: None)
    faulty_ledger.get_account(ACCT)  # warm
    return client, faulty_ledger


@pytest.mark.parametrize("fault", ["conflict", "throttled", "lost"])
def test_grant_survives_a_fault_exactly_once(faulty, reader, dynamodb, fault):
    client, faulty_ledger = faulty
    client.faults = [
        {"conflict": ("raise", conflict()), "throttled": ("raise", throttled())}.get(
            fault, ("lost", timeout())
        )
    ]
    applied = buy(faulty_ledger, order_id="cs_2", payment_intent="pi_2")  # a second AU pack
    assert applied  # this call's grant landed, even if the reply to it was lost
    assert nonzero(faulty_ledger.known_account(ACCT).pools) == {L.INCLUDED: 50, AU: 200}
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50, AU: 200}
    assert len([i for i in ledger_items(dynamodb) if i["op_id"]["S"] == "purchase:cs_2"]) == 1
    assert client.transactions == 2


@pytest.mark.parametrize("fault", ["conflict", "throttled", "lost"])
def test_hold_survives_a_fault_exactly_once(faulty, reader, fault):
    client, faulty_ledger = faulty
    client.faults = [
        {"conflict": ("raise", conflict()), "throttled": ("raise", throttled())}.get(
            fault, ("lost", timeout())
        )
    ]
    hold, created = faulty_ledger.hold(ACCT, hold_request("m1", segments=60))
    assert created
    assert hold.funding == (Funding(L.INCLUDED, 50), Funding(AU, 10))
    stored = sound(reader)
    assert nonzero(stored.pools) == {AU: 90}
    assert stored.held == 60
    assert len(reader.partition(ACCT)[2]) == 1


def test_hold_of_the_last_credits_with_a_lost_reply_is_not_a_402(faulty, reader):
    """The retry after a lost reply finds the pools empty because of its own hold. It must say so."""
    client, faulty_ledger = faulty
    client.faults = [("lost", timeout())]
    hold, created = faulty_ledger.hold(ACCT, hold_request("m1", segments=150))
    assert created
    assert hold.credits == 150
    stored = sound(reader)
    assert nonzero(stored.pools) == {}
    assert stored.held == 150


def test_adjust_to_zero_with_a_lost_reply_reports_its_outcome(faulty, reader):
    client, faulty_ledger = faulty
    client.faults = [("lost", timeout())]
    _, outcome = faulty_ledger.adjust(ACCT, AU, -100, op_id="adj-1", actor="support@x", reason="refund")
    assert outcome == {"pool": AU, "credits": -100, "balance_after": 0}
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50}


@pytest.mark.parametrize("ending", ["post", "void"])
@pytest.mark.parametrize("fault", ["conflict", "throttled", "lost"])
def test_post_and_void_survive_a_fault_exactly_once(faulty, reader, dynamodb, ending, fault):
    client, faulty_ledger = faulty
    hold, _ = faulty_ledger.hold(ACCT, hold_request("m1", segments=60))
    client.faults = [
        {"conflict": ("raise", conflict()), "throttled": ("raise", throttled())}.get(
            fault, ("lost", timeout())
        )
    ]
    ended = getattr(faulty_ledger, ending)(hold)
    assert ended.status == {"post": "posted", "void": "voided"}[ending]
    stored = sound(reader)
    assert stored.held == 0
    expected = {AU: 90} if ending == "post" else {L.INCLUDED: 50, AU: 100}
    assert nonzero(stored.pools) == expected
    kinds = [i["kind"]["S"] for i in ledger_items(dynamodb)]
    assert kinds.count(ending) == 2  # one entry per funding pool, written once


def test_refresh_with_a_lost_reply_reports_applied(faulty, reader, clock):
    client, faulty_ledger = faulty
    clock.advance(days=25)
    client.faults = [("lost", timeout())]
    after, applied = refresh(faulty_ledger, clock)
    assert applied
    assert after.period_start.isoformat() == "2026-12-05"
    assert nonzero(sound(reader).pools) == {L.INCLUDED: 50, AU: 100}


def test_migration_with_a_lost_reply_reports_migrated(faulty, reader, ledger):
    client, faulty_ledger = faulty
    ledger.create_account(new_account("acct-l", model="legacy"), reference={})
    faulty_ledger.get_account("acct-l")  # warm
    client.faults = [("lost", timeout())]
    done = faulty_ledger.migrate("acct-l", ratio=(1, 1), actor="support", op_id="migrate:k1")
    assert (done.outcome, done.converted, done.before.credit_model) == ("migrated", 50, "legacy")
    assert nonzero(sound(reader, "acct-l").pools) == {AU: 50}


def test_a_recharge_claim_with_a_lost_reply_is_its_own(faulty, reader):
    client, faulty_ledger = faulty

    def on(auto: AR.AutoRecharge) -> AR.AutoRecharge:
        auto = AR.with_customer(auto, "cus_1", "pm_1")
        return AR.with_settings(auto, enabled=True, regions={"AU": AR.RegionRule(1)}, monthly_cap_cents=5000)

    faulty_ledger.update_auto_recharge(ACCT, on, op_id="settings")
    client.faults = [("lost", timeout())]
    claim = faulty_ledger.claim_recharge(ACCT, "AU", 200)
    assert claim.recharge_id == "rch_acct-1_AU_1"
    assert faulty_ledger.get_account(ACCT).auto_recharge.spent_this_period_cents == 620
