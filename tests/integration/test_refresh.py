"""The billing-date refresh: time travel over 14 months, late, twice, concurrent, at scale, through SQS."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from local.moto_dynamo import create_tables
from smscredits import runtime
from smscredits.adapters.dynamo.codec import account_item
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.adapters.dynamo.values import to_item
from smscredits.adapters.sqs import SqsRefreshQueue
from smscredits.domain import ledger as L
from smscredits.domain.audit import check_account
from smscredits.domain.catalog import PLANS
from smscredits.domain.events import ALLOWANCE_REFRESHED
from smscredits.domain.movements import HoldRequest
from smscredits.domain.periods import anniversary, iso
from smscredits.services import accounts
from smscredits.services.ports import Ledger, Statements
from smscredits.services.refresh import refresh_account, run_scheduled
from smscredits.settings import get_settings
from tests import outbox
from tests.conftest import TABLE, Clock, new_account
from tests.functions import Context, event, load_function

# Use cases: they run on the in-memory ledger (tests/contract holds it to DynamoDB's rules).
pytestmark = pytest.mark.memory_ledger


def make(store: Ledger, account_id: str, anchor: date, plan: str = "starter", **fields: Any) -> None:
    accounts.create_account(
        store,
        account_id=account_id,
        plan=plan,
        billing_anchor=anchor,
        home_region="AU",
        created_at=fields.get("created_at"),
        smart_encoding=False,
        actor="test",
    )


def audit(reader: Statements, account_id: str) -> list[str]:
    return check_account(*reader.partition(account_id))


def kinds(reader: Statements, account_id: str) -> Counter[str]:
    return Counter(entry.kind for entry in reader.partition(account_id)[1])


@pytest.fixture
def reader(dynamodb: Any) -> DynamoStatements:
    return DynamoStatements(TABLE, client=dynamodb)


@pytest.fixture
def scheduled(service: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refresh handlers wired to moto and the test clock, with no queue."""
    runtime.use(runtime.container().replace(refresh_queue=None))


def refreshed_events() -> list[dict[str, Any]]:
    """The allowance.refreshed events written with the refreshes, oldest first."""
    return outbox.published(ALLOWANCE_REFRESHED)


def run_hourly_handler() -> dict[str, int]:
    result: dict[str, int] = load_function("refresh").lambda_handler(event("scheduler_sweep"), Context())
    return result


ANCHOR_DAYS = (1, 15, 28, 29, 30, 31)


@pytest.mark.slow
def test_fourteen_months_one_refresh_per_period_on_the_clamped_day(scheduled, service):
    """Daily runs at 00:30 UTC from 2027-01-01 to 2028-03-31 (leap February 2028) for six anchors."""
    clock = service
    clock.now = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    store, reader = runtime.container().ledger, runtime.container().statements
    for day in ANCHOR_DAYS:
        make(store, f"a{day}", date(2026, 1, day))
    refreshed_on: dict[str, list[date]] = {f"a{day}": [] for day in ANCHOR_DAYS}
    while clock.now.date() <= date(2028, 3, 31):
        seen = len(refreshed_events())
        run_hourly_handler()
        for detail in refreshed_events()[seen:]:
            refreshed_on[detail["account_id"]].append(clock.now.date())
        clock.advance(days=1)
    months = [(2027, m) for m in range(1, 13)] + [(2028, 1), (2028, 2), (2028, 3)]
    for day in ANCHOR_DAYS:
        account_id = f"a{day}"
        expected = [d for d in (anniversary(day, y, m) for y, m in months) if d > date(2027, 1, 1)]
        assert refreshed_on[account_id] == expected, account_id
        assert len(expected) >= 14
        counts = kinds(reader, account_id)
        # Nothing was spent: every refresh lapsed the 50 left and granted 50 (creation granted the first).
        assert counts["expiry"] == len(expected) and counts["grant"] == len(expected) + 1
        account = store.get_account(account_id)
        assert account.pools[L.INCLUDED] == PLANS["starter"]
        assert account.period_start == expected[-1]
        assert audit(reader, account_id) == []
    assert date(2028, 2, 29) in refreshed_on["a29"] and date(2028, 2, 29) in refreshed_on["a31"]
    assert date(2027, 2, 28) in refreshed_on["a30"] and date(2027, 4, 30) in refreshed_on["a31"]


def test_late_run_refreshes_once_for_the_current_period(scheduled, service):
    clock = service
    store, reader = runtime.container().ledger, runtime.container().statements
    make(store, "late", date(2026, 1, 5))  # period 2026-11-05, due 2026-12-05
    store.hold("late", HoldRequest("m1", 10, "AU", "h", {}))
    store.post(store.get_hold("late", "m1"))
    clock.now = datetime(2027, 2, 20, 9, 0, tzinfo=UTC)  # the runs of December and January were missed
    assert run_hourly_handler()["refreshed"] == 1
    account = store.get_account("late")
    assert account.period_start == date(2027, 2, 5)
    assert account.next_refresh_at == datetime(2027, 3, 5, tzinfo=UTC)
    entries = reader.partition("late")[1]
    assert [(e.kind, e.amount) for e in entries if e.kind in ("grant", "expiry")] == [
        ("grant", 50),
        ("expiry", -40),
        ("grant", 50),
    ]
    assert len(refreshed_events()) == 1
    assert audit(reader, "late") == []


def test_firing_twice_grants_once_and_publishes_once(scheduled, service):
    clock = service
    store, reader = runtime.container().ledger, runtime.container().statements
    make(store, "twice", date(2026, 1, 5))
    clock.now = datetime(2026, 12, 5, 0, 1, tzinfo=UTC)
    assert run_hourly_handler()["refreshed"] == 1
    assert run_hourly_handler() == {"due": 0, "queued": 0, "refreshed": 0, "failed": 0}
    # A duplicate that got past the index (it is eventually consistent) still changes nothing.
    again = refresh_account(store, "twice", clock.now)
    assert not again.refreshed and again.period_start == "2026-12-05"
    assert kinds(reader, "twice")["grant"] == 2
    assert outbox.kinds() == [ALLOWANCE_REFRESHED]
    assert audit(reader, "twice") == []


def test_a_pending_downgrade_applies_at_the_refresh(scheduled, service):
    clock = service
    store, reader = runtime.container().ledger, runtime.container().statements
    make(store, "down", date(2026, 1, 5), plan="growth")
    answer = accounts.change_plan(store, account_id="down", plan="starter", actor="support", key="down-1")
    assert (answer["plan"], answer["pending_plan"], answer["effective"]) == (
        "growth",
        "starter",
        "next_refresh",
    )
    assert store.get_account("down").pools[L.INCLUDED] == 100
    clock.now = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    run_hourly_handler()
    account = store.get_account("down")
    assert (account.plan, account.pending_plan, account.allowance) == ("starter", None, 50)
    assert account.pools[L.INCLUDED] == 50
    assert refreshed_events()[0]["plan"] == "starter"
    assert audit(reader, "down") == []


def test_open_holds_across_a_refresh(scheduled, service):
    """Our rule: included credits held before a refresh and voided after it lapse; purchased ones return;
    a posted hold stays posted."""
    clock = service
    store, reader = runtime.container().ledger, runtime.container().statements
    make(store, "held", date(2026, 1, 5))
    store.adjust("held", L.purchased_pool("AU"), 20, op_id="buy", actor="test", reason="buy")
    store.hold("held", HoldRequest("split", 55, "AU", "h1", {}))  # 50 included + 5 purchased
    store.hold("held", HoldRequest("sent", 3, "AU", "h2", {}))  # 3 purchased
    clock.now = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    run_hourly_handler()
    assert store.get_account("held").pools[L.INCLUDED] == 50  # nothing left to lapse, the allowance granted
    store.void(store.get_hold("held", "split"))
    store.post(store.get_hold("held", "sent"))
    account = store.get_account("held")
    assert account.pools[L.INCLUDED] == 50  # the 50 held from the old period did not join the new one
    assert account.pools[L.purchased_pool("AU")] == 20 - 3
    assert account.held == 0
    voided = [(e.kind, e.pool, e.amount) for e in reader.partition("held")[1] if e.op_id == "voided:split"]
    assert voided == [
        ("void", "included", 50),
        ("expiry", "included", -50),
        ("void", "purchased:AU", 5),
    ]
    assert audit(reader, "held") == []


def test_legacy_refresh_tops_up_the_one_pool(scheduled, service):
    clock = service
    store, reader = runtime.container().ledger, runtime.container().statements
    make(store, "old", date(2026, 1, 5), created_at=datetime(2025, 3, 1, tzinfo=UTC))
    store.hold("old", HoldRequest("m1", 1, "AU", "h", {}))
    store.post(store.get_hold("old", "m1"))
    clock.now = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    run_hourly_handler()
    account = store.get_account("old")
    assert account.pools == {L.LEGACY: 49 + 50}
    assert kinds(reader, "old")["expiry"] == 0
    assert audit(reader, "old") == []


def test_fan_out_through_sqs_and_the_worker(scheduled, service, dynamodb, monkeypatch):
    clock = service
    store, reader = runtime.container().ledger, runtime.container().statements
    for index in range(23):
        make(store, f"q{index}", date(2026, 1, 5))
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="refresh")["QueueUrl"]
    sends: list[int] = []
    sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch", lambda params, **_: sends.append(len(params["Entries"]))
    )
    monkeypatch.setenv("REFRESH_INLINE_MAX", "5")
    get_settings.cache_clear()
    ports = runtime.container()
    runtime.use(ports.replace(settings=get_settings(), refresh_queue=SqsRefreshQueue(url, client=sqs)))
    clock.now = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    assert run_hourly_handler() == {"due": 23, "queued": 23, "refreshed": 0, "failed": 0}
    assert sends == [10, 10, 3]
    records = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        records += [sqs_record(m["MessageId"], m["Body"]) for m in batch]
    assert len(records) == 23
    for offset in range(0, 23, 10):
        answer = load_function("refresh_worker").lambda_handler(
            {"Records": records[offset : offset + 10]}, Context()
        )
        assert answer == {"batchItemFailures": []}
    for index in range(23):
        assert store.get_account(f"q{index}").period_start == date(2026, 12, 5)
        assert audit(reader, f"q{index}") == []
    assert len(refreshed_events()) == 23


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "handle",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:refresh",
        "awsRegion": "us-east-1",
    }


def test_worker_reports_only_the_failing_record(scheduled, service):
    clock = service
    store = runtime.container().ledger
    make(store, "w1", date(2026, 1, 5))
    make(store, "w2", date(2026, 1, 5))
    clock.now = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    records = [
        sqs_record("id-1", json.dumps({"account_id": "w1"})),
        sqs_record("id-bad", json.dumps({"account_id": "no-such-account"})),
        sqs_record("id-2", json.dumps({"account_id": "w2"})),
    ]
    answer = load_function("refresh_worker").lambda_handler({"Records": records}, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "id-bad"}]}
    assert store.get_account("w1").period_start == store.get_account("w2").period_start == date(2026, 12, 5)


def test_inline_run_goes_on_past_a_failing_account(scheduled, service, monkeypatch):
    clock = service
    store = runtime.container().ledger
    make(store, "good", date(2026, 1, 5))
    make(store, "bad", date(2026, 1, 5))
    real = store.refresh_allowance

    def broken(account_id: str, **kwargs: Any) -> Any:
        if account_id == "bad":
            raise RuntimeError("boom")
        return real(account_id, **kwargs)

    monkeypatch.setattr(store, "refresh_allowance", broken)
    clock.now = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    assert run_hourly_handler() == {"due": 2, "queued": 0, "refreshed": 1, "failed": 1}
    assert store.get_account("good").period_start == date(2026, 12, 5)
    assert store.get_account("bad").period_start == date(2026, 11, 5)  # still due for the next run


# ---- concurrency: threads against a moto server, each with its own store -----------------------------


@pytest.fixture
def moto_server() -> Any:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    yield url
    requests.post(f"{url}/moto-api/reset", timeout=5)  # the server shares moto's in-process backends
    server.stop()


def test_concurrent_runs_grant_once_per_account_and_period(moto_server):
    """Eight threads, each with its own client and store, refresh the same due accounts at once.
    moto (patched for per-request atomicity) stands in for DynamoDB; the version condition and the
    OP#refresh guard decide every outcome."""
    clients = [boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1") for _ in range(8)]
    create_tables(clients[0])
    now = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    seeding = DynamoLedger(TABLE, client=clients[0], clock=Clock(datetime(2026, 11, 10, tzinfo=UTC)))
    ids = [f"c{index}" for index in range(12)]
    for account_id in ids:
        make(seeding, account_id, date(2026, 1, 5))
    barrier = threading.Barrier(len(clients))
    outcomes: list[bool] = []
    errors: list[BaseException] = []

    def worker(client: Any) -> None:
        store = DynamoLedger(TABLE, client=client, clock=lambda: now)
        reader = DynamoStatements(TABLE, client=client)
        order = list(reader.due_accounts(now))
        random.shuffle(order)
        barrier.wait()
        try:
            for account_id in order:
                outcomes.append(refresh_account(store, account_id, now).refreshed)
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(outcomes) == len(ids) * len(clients)
    assert sum(outcomes) == len(ids)
    refreshed = outbox.published(ALLOWANCE_REFRESHED, client=clients[0])
    assert sorted(detail["account_id"] for detail in refreshed) == sorted(ids)
    reader = DynamoStatements(TABLE, client=clients[0])
    for account_id in ids:
        account, entries, holds = reader.partition(account_id)
        assert account.period_start == date(2026, 12, 5)
        assert [e.kind for e in entries].count("grant") == 2
        assert check_account(account, entries, holds) == []


# ---- scale: 20,000 accounts, about 1/30 due ----------------------------------------------------------


@pytest.mark.slow
def test_scale_reads_only_due_accounts(dynamodb, clock, reader):
    total = 20_000
    now = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
    clock.now = now
    due_ids: list[str] = []
    items = []
    for index in range(total):
        account_id = f"s{index:05d}"
        if index % 30 == 0:
            # Due since midnight: its period (anchor the 10th) began on 2026-10-10 and never refreshed.
            seed = new_account(account_id, anchor=date(2026, 1, 10), now=datetime(2026, 10, 20, tzinfo=UTC))
            due_ids.append(account_id)
        else:
            seed = new_account(account_id, anchor=date(2026, 1, 1 + index % 30), now=now)
        # Zero pools and no entries: the audit of a refreshed account sees only the refresh's entries.
        items.append(account_item(seed))
    started = time.perf_counter()
    for offset in range(0, total, 25):
        dynamodb.batch_write_item(
            RequestItems={TABLE: [{"PutRequest": {"Item": to_item(i)}} for i in items[offset : offset + 25]]}
        )
    seeded = time.perf_counter() - started
    returned: list[int] = []
    dynamodb.meta.events.register(
        "after-call.dynamodb.Query", lambda parsed, **_: returned.append(len(parsed.get("Items", [])))
    )
    store = DynamoLedger(TABLE, client=dynamodb, clock=clock)
    started = time.perf_counter()
    counts = run_scheduled(store, reader, queue=None, inline_max=25)
    took = time.perf_counter() - started
    print(
        f"\nscale: {total} accounts, {len(due_ids)} due; index items returned {sum(returned)} in "
        f"{len(returned)} queries; refresh {took:.1f} s (seeding {seeded:.1f} s)"
    )
    assert counts == {"due": len(due_ids), "queued": 0, "refreshed": len(due_ids), "failed": 0}
    assert sum(returned) <= 1.1 * len(due_ids)
    for account_id in due_ids[:: max(1, len(due_ids) // 40)]:
        assert store.get_account(account_id).period_start == date(2026, 11, 10)
        assert audit(reader, account_id) == []
    assert iso(store.get_account(due_ids[-1]).next_refresh_at) == "2026-12-10T00:00:00.000Z"
