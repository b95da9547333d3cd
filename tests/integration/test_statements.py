"""Statements that scale on DynamoDB: a date range is a key condition of LedgerByTime (only the entries in
the range are read), a kind filter reads a bounded number of entries per request, and a CSV too large for a
Lambda response is exported to S3 behind a presigned link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3

from smscredits import runtime
from smscredits.adapters.dynamo.backfill import backfill_ledger_time
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.adapters.statement_exports import S3StatementExports
from smscredits.domain import ledger as L
from smscredits.services import statements
from tests.conftest import TABLE, Clock, new_account
from tests.functions import Context, call, event, load_function, user
from tests.ledgers import ACCT
from tests.reliability import support as S

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


def test_a_csv_too_large_for_a_lambda_response_is_exported_behind_a_303(service, monkeypatch):
    """Past the inline bound (6 MB on Lambda; a few hundred bytes here) the CSV is
    put in the exports bucket and the answer is 303 to a presigned link that downloads the same CSV."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="exports")
    runtime.use(runtime.container().replace(statement_exports=S3StatementExports("exports", client=s3)))
    assert S.create()[0] == 201
    for index in range(5):
        assert S.send(f"k{index}")[0] == 202
    status, inline = call("account_api", "account_get_ledger", claims=user(), path="/v1/ledger.csv", query={})
    assert status == 200 and inline.count("\n") == 12  # the header, 1 grant, 5 holds and 5 posts
    monkeypatch.setattr(statements, "CSV_INLINE_MAX_BYTES", len(inline.encode()) - 1)
    response = load_function("account_api").lambda_handler(
        event("account_get_ledger", claims=user(), path="/v1/ledger.csv", query={}), Context()
    )
    assert response["statusCode"] == 303
    link = urlsplit(response["headers"]["Location"])
    assert link.path.startswith("/exports/statements/acct-1/") or link.path.startswith("/statements/acct-1/")
    key = link.path.split("/statements/", 1)[1]
    exported = s3.get_object(Bucket="exports", Key=f"statements/{key}")
    assert exported["Body"].read().decode() == inline
    assert exported["ContentDisposition"] == 'attachment; filename="ledger-acct-1.csv"'


def test_entries_written_before_the_index_are_backfilled_into_statements(dynamodb):
    adjustments(dynamodb, 3)
    old = dynamodb.scan(TableName=TABLE, FilterExpression="attribute_exists(ledger_at)")["Items"]
    for item in old[:2]:  # as written before LedgerByTime existed
        dynamodb.update_item(
            TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]}, UpdateExpression="REMOVE ledger_at"
        )
    statements = DynamoStatements(TABLE, client=dynamodb)
    assert len(statements.statement(ACCT, limit=100)[0]) == 2
    assert backfill_ledger_time(dynamodb, TABLE) == 2
    assert backfill_ledger_time(dynamodb, TABLE) == 0
    assert len(statements.statement(ACCT, limit=100)[0]) == 4
