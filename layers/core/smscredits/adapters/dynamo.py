"""DynamoDB plumbing: the lazily created client, item (de)serialisation and the table's key layout."""

from __future__ import annotations

import hashlib
import os
from decimal import Decimal
from functools import cache
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

ACCOUNT_SK = "ACCOUNT"
REFRESH_INDEX = "DueRefresh"
SWEEP_INDEX = "OpenHolds"
# Shards of the two sparse indexes: spreads a million accounts' refresh times (and open holds) over
# partitions so no single index partition is hot; a sweep queries each shard.
REFRESH_SHARDS = 16
SWEEP_SHARDS = 8


def account_pk(account_id: str) -> str:
    return f"ACCT#{account_id}"


def ledger_sk(version: int, index: int) -> str:
    return f"LEDGER#{version:012d}#{index:02d}"


def hold_sk(hold_id: str) -> str:
    return f"HOLD#{hold_id}"


def guard_sk(op_id: str) -> str:
    return f"OP#{op_id}"


def shard_of(key: str, shards: int, prefix: str) -> str:
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
    return f"{prefix}#{digest % shards:02d}"


@cache
def dynamodb_client() -> Any:
    """One client per process, created on first use (never at import: cold start)."""
    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=2,
        read_timeout=5,
        max_pool_connections=64,
    )
    return boto3.client("dynamodb", region_name=os.environ.get("AWS_REGION", "us-east-1"), config=config)


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in values.items() if value is not None}


def to_value(value: Any) -> dict[str, Any]:
    return _serializer.serialize(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON → plain Python, with integers as int (credits and cents are never fractional)."""
    return {key: _plain(_deserializer.deserialize(value)) for key, value in item.items()}
