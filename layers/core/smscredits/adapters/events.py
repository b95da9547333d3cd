"""Outbox items onto an EventBridge bus (PutEvents): what the stream function does on AWS. The event's
`detail` carries its stable `event_id`: EventBridge delivers at least once, consumers dedupe on it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from smscredits.adapters import aws
from smscredits.domain.events import SOURCE


def entry_of(item: Mapping[str, Any], bus_name: str) -> dict[str, Any]:
    """The PutEvents entry of one outbox item."""
    return {
        "EventBusName": bus_name,
        "Source": SOURCE,
        "DetailType": item["detail_type"],
        "Detail": json.dumps(dict(item["detail"]), default=str),
    }


class EventBridgePublisher:
    """Puts outbox items on a bus; the client is created on first use (never at import: cold start)."""

    def __init__(self, bus_name: str, *, client: Any = None) -> None:
        self.bus_name = bus_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("events")
        return self._client

    def publish(self, item: Mapping[str, Any]) -> None:
        """One outbox item as one event; raises when EventBridge refused it (the stream retries the record)."""
        response = self.client.put_events(Entries=[entry_of(item, self.bus_name)])
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused {item['detail_type']}: {response.get('Entries')}")
