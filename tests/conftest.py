"""Shared fixtures: moto DynamoDB with the tables of template.yaml, a clock, and a new account."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local import dynamo_fidelity as fidelity
from local.moto_dynamo import create_tables, patch_moto
from smscredits.domain.account import Account
from smscredits.domain.catalog import PLANS
from smscredits.domain.periods import period_containing, period_start_at

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")
patch_moto()

TABLE = "CreditsTable"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 10, 12, 0, tzinfo=UTC))


@pytest.fixture
def dynamo_fidelity() -> Iterator[Callable[[fidelity.Fidelity], None]]:
    """DynamoDB's concurrency behaviour for this test (off otherwise, so in-process tests stay fast): on as
    the LOCAL_DYNAMO_* variables say; the test may call the yielded function to set other parameters."""

    def switch(setting: fidelity.Fidelity) -> None:
        fidelity.configure(setting)

    previous = fidelity.configure(fidelity.Fidelity.from_environment(default_on=True))
    yield switch
    fidelity.configure(previous)


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client)
        yield client


class RequestCounter:
    """Counts DynamoDB requests per operation name through botocore's event hooks."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def reset(self) -> None:
        self.calls.clear()

    @property
    def reads(self) -> int:
        return sum(1 for name in self.calls if name in ("GetItem", "Query", "Scan", "BatchGetItem"))


@pytest.fixture
def counter(dynamodb: Any) -> RequestCounter:
    return RequestCounter(dynamodb)


def new_account(
    account_id: str = "acct-1",
    *,
    plan: str = "starter",
    model: str = "segment",
    home_region: str = "AU",
    anchor: date = date(2026, 1, 5),
    now: datetime = datetime(2026, 11, 10, 12, 0, tzinfo=UTC),
) -> Account:
    start, next_start = period_containing(anchor, now.date())
    return Account(
        account_id=account_id,
        plan=plan,
        credit_model=model,  # type: ignore[arg-type]
        home_region=home_region,
        billing_anchor=anchor,
        created_at=now,
        period_start=start,
        next_refresh_at=period_start_at(next_start),
        allowance=PLANS[plan],
        pools={},
        held=0,
        version=0,
    )
