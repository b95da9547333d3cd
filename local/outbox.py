"""Local mode's outbox publisher: a thread of the main process that reads new outbox items from the table
and records each event once, in the order written, as the bus would receive it (`published()`).

Moto serves no DynamoDB stream (DescribeStream answers "Not yet implemented"), so this reads the outbox's
own key space by time instead: each poll queries every shard from a little before the newest item seen (a
write that committed later may carry an earlier time) and skips the event ids it already published."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from smscredits.adapters.dynamo.outbox import outbox_items
from smscredits.adapters.events import entry_of
from smscredits.domain.periods import iso, parse_iso

log = logging.getLogger("local.outbox")

POLL_SECONDS = 0.25
# How far before the newest item seen each poll reads again: longer than any transaction takes to commit
# after it took its time (a retried write keeps its first time; the commit engine gives up within seconds).
OVERLAP = timedelta(seconds=30)
LOCAL_BUS = "sms-credits-local"


class OutboxPoller:
    """Publishes the outbox of `table` (through `client`) into an in-process list until stopped."""

    def __init__(self, client: Any, table: str, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.client = client
        self.table = table
        self.poll_seconds = poll_seconds
        self._published: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._since = ""
        self._lock = threading.Lock()
        self._polling = threading.Lock()  # the thread and GET /__local/events both poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def published(self) -> list[dict[str, Any]]:
        """Every event published so far, oldest first, as EventBridge entries: EventBusName, Source,
        DetailType and Detail (the detail as a dict, with its stable `event_id`). For GET /__local/events."""
        with self._lock:
            return list(self._published)

    def poll(self) -> int:
        """Publish what was written since the last poll; returns how many events it published."""
        with self._polling:
            items = outbox_items(self.client, self.table, self._since)
            fresh = [item for item in items if item["event_id"] not in self._seen]
            with self._lock:
                for item in fresh:
                    self._seen.add(item["event_id"])
                    self._published.append({**entry_of(item, LOCAL_BUS), "Detail": dict(item["detail"])})
            if items:
                self._since = iso(parse_iso(items[-1]["created_at"]) - OVERLAP)
            return len(fresh)

    def events(self) -> list[dict[str, Any]]:
        """GET /__local/events' source: a poll first (so what a request just wrote is there), then every event
        published so far as `detail-type` + `detail`."""
        self.poll()
        return [{"detail-type": entry["DetailType"], "detail": entry["Detail"]} for entry in self.published()]

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # the table is briefly unreachable at shutdown; the next poll catches up
                log.exception("outbox poll failed")
