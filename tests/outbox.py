"""Test helper: the events the movements wrote to the outbox (what the publisher will put on the bus), from
the ledger under test: in memory, or the table on moto."""

from __future__ import annotations

from typing import Any

from smscredits import runtime
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.outbox import outbox_items
from smscredits.adapters.memory_ledger import InMemoryLedger
from tests.conftest import TABLE


def written(*, client: Any = None) -> list[tuple[str, dict[str, Any]]]:
    """(detail type, detail) of every event in the outbox, oldest first."""
    if client is None:
        ledger = runtime.container().ledger
        if isinstance(ledger, InMemoryLedger):
            return ledger.outbox()
        assert isinstance(ledger, DynamoLedger)
        client = ledger.engine.client
    return [(item["detail_type"], item["detail"]) for item in outbox_items(client, TABLE)]


def published(kind: str | None = None, *, client: Any = None) -> list[dict[str, Any]]:
    """The details of the events of `kind` (every kind when None) in the outbox, oldest first."""
    return [detail for name, detail in written(client=client) if kind is None or name == kind]


def kinds(*, client: Any = None) -> list[str]:
    """The detail types in the outbox, oldest first."""
    return [name for name, _ in written(client=client)]
