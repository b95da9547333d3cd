"""The local clock: POST /__local/clock moves local mode's time forward (never back) and runs the schedules at
once; GET /__local/clock tells the time. Never deployed: template.yaml has no such route.

How the time reaches every worker process: the offset from the real clock is kept in one JSON file
(LOCAL_CLOCK_FILE, replaced atomically); each function's Clock port (smscredits.adapters.clock.OffsetClock)
reads it whenever the file changes, so the next invocation of any worker sees the new time."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from local.gateway import error_response
from local.schedules import scheduler_event
from local.template import Schedule
from smscredits.adapters.clock import OffsetClock
from smscredits.domain.periods import iso, parse_iso

Invoke = Callable[[str, dict[str, Any]], Any]
MAX_ADVANCE_DAYS = 3660


class LocalClock:
    """Local mode's time: the real UTC time moved on by an offset that only grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader = OffsetClock(path)
        self._lock = threading.Lock()
        self._write(timedelta())

    def now(self) -> datetime:
        return self._reader()

    def offset(self) -> timedelta:
        return self._reader.offset()

    def advance(self, by: timedelta) -> None:
        with self._lock:
            self._write(self.offset() + by)

    def _write(self, offset: timedelta) -> None:
        # Replaced, never rewritten in place: a worker reading it sees the old offset or the new one.
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps({"offset_seconds": offset.total_seconds()}))
        os.replace(partial, self.path)


class ClockApp:
    """The WSGI app of /__local/clock: move the clock, then run every schedule once through the gateway."""

    def __init__(self, clock: LocalClock, schedules: Sequence[Schedule], invoke: Invoke) -> None:
        self.clock = clock
        self.schedules = schedules
        self.invoke = invoke
        self._moving = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        if request.method == "GET":
            response = _json({"now": iso(self.clock.now()), "offset_seconds": self._offset_seconds()})
        elif request.method == "POST":
            response = self.move(request)
        else:
            response = error_response(
                405, "invalid_request", "GET or POST only.", None, {"Allow": "GET, POST"}
            )
        return response(environ, start_response)

    def _offset_seconds(self) -> int:
        return int(self.clock.offset().total_seconds())

    def move(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError:
            return error_response(400, "invalid_request", "The body is not JSON.")
        if not isinstance(body, dict) or len(body.keys() & {"advance_days", "now"}) != 1 or len(body) != 1:
            message = 'Send {"advance_days": N} or {"now": "<ISO time>"}.'
            return error_response(400, "invalid_request", message, {"fields": ["advance_days", "now"]})
        with self._moving:
            before = self.clock.now()
            try:
                by = _step(body, before)
            except ValueError as refused:
                return error_response(400, "invalid_request", str(refused), {"now": iso(before)})
            self.clock.advance(by)
            ran = {schedule.function: self._run(schedule) for schedule in self.schedules}
        return _json(
            {
                "previous": iso(before),
                "now": iso(self.clock.now()),
                "offset_seconds": self._offset_seconds(),
                "ran": ran,
            }
        )

    def _run(self, schedule: Schedule) -> Any:
        try:
            return self.invoke(schedule.function, scheduler_event(schedule))
        except Exception as failure:  # reported in the answer: the clock has moved either way
            return {"error": str(failure).splitlines()[0]}


def _step(body: dict[str, Any], now: datetime) -> timedelta:
    """How far to move: forward only (ValueError otherwise)."""
    if "advance_days" in body:
        days = body["advance_days"]
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= MAX_ADVANCE_DAYS:
            raise ValueError(f"advance_days must be a number of days above 0 and at most {MAX_ADVANCE_DAYS}.")
        return timedelta(days=days)
    text = body["now"]
    try:
        target = parse_iso(str(text))
    except ValueError:
        raise ValueError("now must be an ISO 8601 time with an offset or Z.") from None
    if target.tzinfo is None:
        raise ValueError("now must be an ISO 8601 time with an offset or Z.")
    if target <= now:
        raise ValueError("The local clock only moves forward.")
    return target - now


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status, content_type="application/json")


def main(argv: list[str]) -> int:
    """`python -m local.clock DAYS` (`make clock DAYS=31`): move the running local mode's clock on and print what
    the schedules did."""
    import requests

    from local import run_file

    if len(argv) != 1:
        print("usage: python -m local.clock DAYS")
        return 2
    path = run_file()
    if not path.exists():
        print(f"no local mode found ({path} is missing): start `make local` first")
        return 2
    gateway = json.loads(path.read_text())["gateway"]
    answer = requests.post(f"{gateway}/__local/clock", json={"advance_days": float(argv[0])}, timeout=120)
    print(json.dumps(answer.json(), indent=2))
    return 0 if answer.ok else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
