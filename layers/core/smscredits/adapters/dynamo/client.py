"""The DynamoDB client: one per process, created on first use (never at import: cold start)."""

from __future__ import annotations

from functools import cache
from typing import Any

from botocore.config import Config

from smscredits.adapters import aws


@cache
def dynamodb_client() -> Any:
    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=2,
        read_timeout=5,
        max_pool_connections=64,
    )
    return aws.client("dynamodb", config)
