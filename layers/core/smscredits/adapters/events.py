"""The EventPublisher port: EventBridge PutEvents in AWS, a JSON-lines file in local mode, a recorder in tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from smscredits.adapters import aws

SOURCE = "sms-credits"


class EventBridgePublisher:
    """Puts one event on a bus; the client is created on first use (never at import: cold start)."""

    def __init__(self, bus_name: str, *, client: Any = None) -> None:
        self.bus_name = bus_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("events")
        return self._client

    def publish(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        entry = {
            "EventBusName": self.bus_name,
            "Source": SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(dict(detail), default=str),
        }
        response = self.client.put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused {detail_type}: {response.get('Entries')}")


class RecordingPublisher:
    """Keeps what was published (tests assert on it; local mode has no bus)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    def publish(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        self.published.append((detail_type, dict(detail)))


class JsonLinesPublisher:
    """Appends each event to a file, one JSON line each (local mode: GET /__local/events reads it back). One
    `write` of one line per event on a file opened for appending, so the worker processes' lines never mix."""

    def __init__(self, path: str) -> None:
        self.path = path

    def publish(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        line = json.dumps({"source": SOURCE, "detail-type": detail_type, "detail": dict(detail)}, default=str)
        with open(self.path, "a", encoding="utf-8") as sink:
            sink.write(line + "\n")
