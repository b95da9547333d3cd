"""Refresh scaling: items the due-refresh Query reads, and seconds, as the number of accounts grows."""

from __future__ import annotations

import os
import time
import warnings
from datetime import UTC, date, datetime
from typing import Any

from bench.common import Row, Section, announce

TABLE = "CreditsTable"
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
GROWTH_LIMIT = 1.1  # items read may exceed the due accounts by this factor (a page's worth of slack)


def _seed(client: Any, total: int) -> tuple[int, float]:
    """`total` accounts, every 30th due since midnight, written with BatchWriteItem (as the scale test does)."""
    from smscredits.adapters.dynamo.codec import account_item
    from smscredits.adapters.dynamo.values import to_item
    from tests.conftest import new_account

    due = 0
    items = []
    for index in range(total):
        if index % 30 == 0:
            # Anchor the 10th, created in October and never refreshed: its November period began today.
            seed = new_account(
                f"s{index:06d}", anchor=date(2026, 1, 10), now=datetime(2026, 10, 20, tzinfo=UTC)
            )
            due += 1
        else:
            seed = new_account(f"s{index:06d}", anchor=date(2026, 1, 1 + index % 30), now=NOW)
        items.append({"PutRequest": {"Item": to_item(account_item(seed))}})
    started = time.perf_counter()
    for offset in range(0, total, 25):
        client.batch_write_item(RequestItems={TABLE: items[offset : offset + 25]})
    return due, time.perf_counter() - started


INLINE_MAX_TOTAL = 10_000  # above this, moto's ~60 ms per refresh (not DynamoDB's) would dominate the bench


def _measure(total: int) -> tuple[int, int, int, float, float | None, float]:
    """(due, items read, queries, seconds to find, seconds for the whole inline run or None, seconds seeding)."""
    import boto3
    from moto import mock_aws

    from local.moto_dynamo import create_tables
    from smscredits.adapters.dynamo.ledger import DynamoLedger
    from smscredits.adapters.dynamo.reader import DynamoStatements
    from smscredits.services.refresh import run_scheduled

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client)
        due, seeding = _seed(client, total)
        returned: list[int] = []
        client.meta.events.register(
            "after-call.dynamodb.Query", lambda parsed, **_: returned.append(len(parsed.get("Items", [])))
        )
        reader = DynamoStatements(TABLE, client=client)
        started = time.perf_counter()
        found = len(list(reader.due_accounts(NOW)))
        finding = time.perf_counter() - started
        items, queries = sum(returned), len(returned)
        assert found == due, (found, due)
        if total > INLINE_MAX_TOTAL:
            return due, items, queries, finding, None, seeding
        ledger = DynamoLedger(TABLE, client=client, clock=lambda: NOW)
        started = time.perf_counter()
        counts = run_scheduled(ledger, reader, queue=None, inline_max=25)
        whole = time.perf_counter() - started
        assert counts["refreshed"] == due, counts
    return due, items, queries, finding, whole, seeding


def run(quick: bool) -> Section:
    announce("refresh scaling")
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    warnings.filterwarnings("ignore", "No application metrics to publish")
    from local.moto_dynamo import patch_moto

    patch_moto()
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 50_000)
    section = Section(
        "Refresh scaling",
        f"In-process moto (`mock_aws`, the tables of template.yaml, `local.moto_dynamo.patch_moto`). For each "
        f"of {', '.join(f'{n:,}' for n in sizes)} accounts, every 30th is due (its period began today and was "
        "never refreshed), the rest are not; accounts are seeded with BatchWriteItem as in "
        "`tests/integration/test_refresh.py`'s scale test. A botocore `after-call` hook counts the items "
        "DynamoDB returns to the refresh's Query calls on the sharded DueRefresh index. Seconds: finding the "
        "due accounts alone, then the whole hourly run refreshing every due account inline (no queue; up to "
        f"{INLINE_MAX_TOTAL:,} accounts only: moto spends ~60 ms per refresh, so at 50,000 the run would time "
        "moto rather than the service, and the worker fans out through SQS there anyway). The "
        "baseline is the number of due accounts: items read should track it, not the total.",
    )
    for total in sizes:
        due, items, queries, finding, whole, seeding = _measure(total)
        ratio = items / due
        run_text = f"run {whole:.1f} s" if whole is not None else "run not measured"
        print(
            f"{total:,} accounts, {due:,} due: {items:,} items read in {queries} queries, find {finding:.2f} s, "
            f"{run_text} (seeding {seeding:.1f} s)"
        )
        section.rows.append(
            Row(
                f"refresh, {total:,} accounts",
                f"{items:,} items read ({queries} queries); find {finding:.2f} s, {run_text}",
                f"{due:,} due",
                f"{ratio:.2f} items per due account",
                f"≤ {GROWTH_LIMIT:g} per due account",
                ratio <= GROWTH_LIMIT,
            )
        )
        if ratio > GROWTH_LIMIT:
            section.notes.append(f"refresh at {total:,} accounts read {ratio:.2f} items per due account.")
    if quick:
        section.notes.append("refresh: --quick stops at 10,000 accounts; the full run also measures 50,000.")
    return section
