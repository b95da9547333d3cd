"""The Statements port on DynamoDB: an account's statement, its whole partition for the check, support's list of
accounts, and the two sparse indexes (due refreshes, stale holds). Reads never move credits."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from smscredits.adapters.dynamo.client import dynamodb_client
from smscredits.adapters.dynamo.codec import (
    ACCOUNT_LIST,
    ACCOUNT_SK,
    ACCOUNTS_INDEX,
    HOLD_PREFIX,
    LEDGER_PREFIX,
    LEDGER_TIME_INDEX,
    REFRESH_INDEX,
    REFRESH_SHARDS,
    SWEEP_INDEX,
    SWEEP_SHARDS,
    account_from_item,
    account_id_of,
    account_key,
    account_pk,
    hold_from_item,
    record_from_item,
    shard_name,
)
from smscredits.adapters.dynamo.values import from_item, query_items, to_value
from smscredits.domain.account import Account, Hold, LedgerRecord
from smscredits.domain.account_settings import list_cursor, listed_after
from smscredits.domain.errors import InvalidRequest, NotFound, UpstreamUnavailable
from smscredits.domain.ledger import STATEMENT_MAX_SCANNED
from smscredits.domain.periods import iso


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, account_id: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        pk, sk = key["pk"], key["sk"]
        # Exactly {"S": ...} each: anything else would reach DynamoDB as a malformed key (a 500, not a 4xx).
        if pk != {"S": account_pk(account_id)} or not isinstance(sk, dict) or list(sk) != ["S"]:
            raise ValueError("cursor of another listing")
        if not isinstance(sk["S"], str) or not sk["S"].startswith(LEDGER_PREFIX):
            raise ValueError("cursor of another listing")
        at = key["ledger_at"]
        if not isinstance(at, dict) or list(at) != ["S"] or not isinstance(at["S"], str) or not at["S"]:
            raise ValueError("cursor of another listing")
        return {"pk": pk, "sk": sk, "ledger_at": at}
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest("The cursor is not one this API returned.", {"cursor": "invalid"}) from exc


def time_condition(start: datetime | None, end: datetime | None) -> tuple[str, dict[str, Any]]:
    """LedgerByTime's key condition for [start, end): an entry at `end` sorts after it ("<end>#...")."""
    values = {name: to_value(iso(moment)) for name, moment in ((":start", start), (":end", end)) if moment}
    if start and end:
        return "pk = :pk AND ledger_at BETWEEN :start AND :end", values
    if start:
        return "pk = :pk AND ledger_at >= :start", values
    if end:
        return "pk = :pk AND ledger_at < :end", values
    return "pk = :pk", values


class DynamoStatements:
    def __init__(
        self, table_name: str, *, client: Any = None, max_scanned: int = STATEMENT_MAX_SCANNED
    ) -> None:
        self.table = table_name
        self._client = client
        self.max_scanned = max_scanned

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return query_items(self.client, **{"TableName": self.table, **kwargs})

    def partition(self, account_id: str) -> tuple[Account, list[LedgerRecord], list[Hold]]:
        """The account, all its ledger entries and all its holds (for the check and for tests)."""
        account: Account | None = None
        entries: list[LedgerRecord] = []
        holds: list[Hold] = []
        for raw in self._query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": to_value(account_pk(account_id))},
            ConsistentRead=True,
        ):
            if raw["sk"] == ACCOUNT_SK:
                account = account_from_item(raw)
            elif raw["sk"].startswith(LEDGER_PREFIX):
                entries.append(record_from_item(raw))
            elif raw["sk"].startswith(HOLD_PREFIX):
                holds.append(hold_from_item(raw))
        if account is None:
            raise NotFound(f"Account {account_id} does not exist.", {"account_id": account_id})
        return account, entries, holds

    def require_account(self, account_id: str) -> None:
        """Raise NotFound unless the account exists (one key-only read)."""
        found = self.client.get_item(
            TableName=self.table,
            Key=account_key(account_id),
            ProjectionExpression="pk",
        )
        if "Item" not in found:
            raise NotFound(f"Account {account_id} does not exist.", {"account_id": account_id})

    def list_accounts(self, *, limit: int, cursor: str | None = None) -> tuple[list[Account], str | None]:
        """Accounts by id, a page of at most `limit` (100 at most: one BatchGetItem): one Query of the Accounts
        index for the page's ids, then their balance items, read consistently. The index itself is eventually
        consistent: an account created a moment ago is listed a moment later. A full page has a cursor (the
        next page may be empty), as DynamoDB's own Query answers."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": ACCOUNTS_INDEX,
            "KeyConditionExpression": "account_list = :list",
            "ExpressionAttributeValues": {":list": to_value(ACCOUNT_LIST)},
            "Limit": limit,
        }
        if cursor is not None:
            after = listed_after(cursor)
            start = {"account_list": to_value(ACCOUNT_LIST), "account_id": to_value(after)}
            kwargs["ExclusiveStartKey"] = {**account_key(after), **start}
        page = self.client.query(**kwargs)
        ids = [str(from_item(item)["account_id"]) for item in page.get("Items", [])]
        found = self._balances(ids)
        accounts = [found[account_id] for account_id in ids if account_id in found]
        return accounts, list_cursor(ids[-1]) if ids and "LastEvaluatedKey" in page else None

    def _balances(self, ids: list[str], attempts: int = 8) -> dict[str, Account]:
        """The balance items of up to 100 accounts (BatchGetItem), retrying the keys DynamoDB left unprocessed."""
        found: dict[str, Account] = {}
        keys = [account_key(account_id) for account_id in ids]
        for attempt in range(attempts):
            if not keys:
                return found
            if attempt:
                time.sleep(min(0.2, 0.01 * 2**attempt))
            answer = self.client.batch_get_item(
                RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
            )
            for item in answer.get("Responses", {}).get(self.table, []):
                account = account_from_item(from_item(item))
                found[account.account_id] = account
            keys = answer.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
        if keys:
            raise UpstreamUnavailable("The table is too busy right now; try again.", {"operation": "list"})
        return found

    def account_ids(self) -> Iterator[str]:
        """Every account id (a scan: for the operator's check command, never for a request path)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "sk = :sk",
            "ExpressionAttributeValues": {":sk": to_value(ACCOUNT_SK)},
            "ProjectionExpression": "account_id",
        }
        while True:
            page = self.client.scan(**kwargs)
            yield from (from_item(item)["account_id"] for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def statement(
        self,
        account_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        kinds: tuple[str, ...] = (),
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[list[LedgerRecord], str | None]:
        """Ledger entries newest first, at most `limit`, from LedgerByTime: the dates are its key condition,
        the kinds a filter. A request reads at most `max_scanned` entries, so a rare kind never reads the
        whole ledger at once: the page may then come back short, even empty, with a cursor to go on from."""
        condition, values = time_condition(start, end)
        values[":pk"] = to_value(account_pk(account_id))
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": LEDGER_TIME_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if kinds:
            keys = [f":k{i}" for i in range(len(kinds))]
            kwargs["FilterExpression"] = f"#kind IN ({', '.join(keys)})"
            kwargs["ExpressionAttributeNames"] = {"#kind": "kind"}
            values.update({key: to_value(kind) for key, kind in zip(keys, kinds, strict=True)})
        if cursor:
            kwargs["ExclusiveStartKey"] = decode_cursor(cursor, account_id)
        records: list[LedgerRecord] = []
        budget = self.max_scanned
        while True:
            # Limit counts the entries read, before the filter: without one, read no more than the page needs.
            kwargs["Limit"] = budget if kinds else min(budget, limit - len(records))
            page = self.client.query(**kwargs)
            budget -= int(page.get("ScannedCount", 0))
            for item in page.get("Items", []):
                records.append(record_from_item(from_item(item)))
                if len(records) == limit:
                    return records, encode_cursor({name: item[name] for name in ("pk", "sk", "ledger_at")})
            if "LastEvaluatedKey" not in page:
                return records, None
            if budget <= 0:
                return records, encode_cursor(page["LastEvaluatedKey"])
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def due_accounts(self, now: datetime) -> Iterator[str]:
        """Accounts whose next refresh time has passed: one query per shard of the sparse index."""
        for shard in range(REFRESH_SHARDS):
            for raw in self._query(
                IndexName=REFRESH_INDEX,
                KeyConditionExpression="refresh_shard = :shard AND next_refresh_at <= :now",
                ExpressionAttributeValues={
                    ":shard": to_value(shard_name("RS", shard)),
                    ":now": to_value(iso(now)),
                },
            ):
                yield account_id_of(raw["pk"])

    def stale_holds(self, now: datetime) -> Iterator[tuple[str, str]]:
        """(account id, hold id) of holds still pending past their sweep time."""
        for shard in range(SWEEP_SHARDS):
            for raw in self._query(
                IndexName=SWEEP_INDEX,
                KeyConditionExpression="sweep_shard = :shard AND sweep_after <= :now",
                ExpressionAttributeValues={
                    ":shard": to_value(shard_name("SW", shard)),
                    ":now": to_value(iso(now)),
                },
            ):
                yield account_id_of(raw["pk"]), raw["sk"].removeprefix(HOLD_PREFIX)
