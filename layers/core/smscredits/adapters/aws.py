"""AWS clients from one botocore session per process, created on first use (never at import: cold start).

botocore's client is what boto3.client returns for DynamoDB, EventBridge, SQS and Secrets Manager (boto3
adds resources and S3 transfers, which we do not use); importing boto3 also loads s3transfer, about 0.1 s of
every cold start (docs/performance.md)."""

from __future__ import annotations

from functools import cache
from typing import Any

from botocore.config import Config
from botocore.session import Session, get_session

from smscredits.settings import get_settings


@cache
def session() -> Session:
    return get_session()


def client(service: str, config: Config | None = None) -> Any:
    """A low-level client in the function's region (AWS_REGION, which Lambda sets)."""
    return session().create_client(service, region_name=get_settings().aws_region, config=config)
