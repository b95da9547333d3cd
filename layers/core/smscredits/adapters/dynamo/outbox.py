"""The outbox read back: the events written with their movements, by time, from every outbox shard. The
local poller publishes from here (moto serves no DynamoDB stream: DescribeStream answers "Not yet
implemented"), and tests read what a movement wrote."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from smscredits.adapters.dynamo import codec as C
from smscredits.adapters.dynamo.values import query_items


def outbox_items(client: Any, table: str, since: str = "") -> list[dict[str, Any]]:
    """Every outbox item written at or after `since` (ISO time; "" for all), oldest first."""
    items = [item for shard in C.outbox_shards() for item in _shard(client, table, shard, since)]
    return sorted(items, key=lambda item: (item["created_at"], item["event_id"]))


def _shard(client: Any, table: str, shard: str, since: str) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND sk >= :since",
        "ExpressionAttributeValues": {
            ":pk": {"S": shard},
            ":since": {"S": since or "0"},
        },  # sk starts with a time
        "ConsistentRead": True,
    }
    return query_items(client, **kwargs)
