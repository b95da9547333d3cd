"""Statements that scale on DynamoDB: a date range is a key condition of LedgerByTime (only the entries in
the range are read), a kind filter reads a bounded number of entries per request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.domain import ledger as L
from tests.conftest import TABLE, Clock, new_account
from tests.ledgers import ACCT

START = datetime(2026, 11, 10, 0, 0, tzinfo=UTC)


def scanned_counter(client: Any) -> list[int]:
    """The entries each Query read (ScannedCount), as DynamoDB bills them."""
    counts: list[int] = []
    client.meta.events.register(
        "after-call.dynamodb.Query", lambda parsed, **_: counts.append(int(parsed.get("ScannedCount", 0)))
    )
    return counts


def adjustments(dynamodb: Any, hours: int) -> None:
    clock = Clock(START)
    ledger = DynamoLedger(TABLE, client=dynamodb, clock=clock)
    ledger.create_account(new_account(ACCT, now=START), reference={"actor": "test"})
    for hour in range(hours):
        clock.now = START + timedelta(hours=hour, minutes=30)
        ledger.adjust(ACCT, L.purchased_pool("AU"), 1, op_id=f"adj-{hour}", actor="support", reason="test")


def test_a_date_range_reads_only_the_entries_in_it(dynamodb):
    adjustments(dynamodb, 48)
    scanned = scanned_counter(dynamodb)
    statements = DynamoStatements(TABLE, client=dynamodb)
    page, cursor = statements.statement(
        ACCT, limit=100, start=START + timedelta(hours=10), end=START + timedelta(hours=13)
    )
    assert [entry.created_at.hour for entry in page] == [12, 11, 10]
    assert cursor is None
    assert sum(scanned) == 3  # not the 49 entries of the ledger


def test_a_rare_kind_reads_at_most_the_bound_per_request(dynamodb):
    adjustments(dynamodb, 48)
    scanned = scanned_counter(dynamodb)
    statements = DynamoStatements(TABLE, client=dynamodb, max_scanned=10)
    page, cursor = statements.statement(ACCT, limit=50, kinds=("grant",))
    assert page == [] and cursor is not None
    assert sum(scanned) == 10
    pages = 1
    while cursor is not None:
        more, cursor = statements.statement(ACCT, limit=50, kinds=("grant",), cursor=cursor)
        page.extend(more)
        pages += 1
    assert [entry.kind for entry in page] == ["grant"]  # the account's first allowance
    assert pages == 5 and max(scanned) <= 10
