"""The Clock port: the system's UTC time, or in local mode that time moved on by the offset local mode keeps in a
file (POST /__local/clock), read again whenever the file changes so every worker process sees a move at once."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path


def utc_now() -> datetime:
    return datetime.now(UTC)


class OffsetClock:
    """UTC now plus the offset in `path` ({"offset_seconds": N}; absent or unreadable: no offset yet).

    One stat per reading, and a read only when the file changed: local mode's clock moves between two
    invocations, and every worker process must see it move without a restart."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None
        self._offset = timedelta()

    def offset(self) -> timedelta:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return timedelta()
        seen = (status.st_mtime_ns, status.st_size)
        if seen != self._seen:
            self._offset = timedelta(seconds=float(json.loads(self.path.read_text())["offset_seconds"]))
            self._seen = seen
        return self._offset

    def __call__(self) -> datetime:
        return utc_now() + self.offset()
