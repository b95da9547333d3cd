"""template.yaml's schedules on local timers: one daemon thread each, invoking its function like Scheduler."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from local.template import Schedule

log = logging.getLogger("local.schedules")

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_CRON = re.compile(r"cron\(\s*(\S+)\s+(\S+)\s+.*\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}

Invoke = Callable[[str, dict[str, Any]], Any]


def interval_seconds(expression: str) -> float:
    """`rate(N unit)`, or a cron at a fixed minute of every hour (hourly) or of one hour (daily).

    Other crons are not emulated: a local timer only needs the cadence, not the calendar."""
    rate = _RATE.fullmatch(expression.strip())
    if rate:
        return int(rate.group(1)) * _UNIT_SECONDS[rate.group(2).rstrip("s")]
    cron = _CRON.fullmatch(expression.strip())
    if cron and cron.group(1).isdigit():
        if cron.group(2) == "*":
            return 3600
        if cron.group(2).isdigit():
            return 86400
    raise ValueError(f"unsupported schedule expression for local mode: {expression}")


def scheduler_event(schedule: Schedule) -> dict[str, Any]:
    """What EventBridge Scheduler delivers to a function target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:scheduler:us-east-1:123456789012:schedule/default/{schedule.function}"],
        "detail": {},
    }


class Timers:
    """Runs each schedule every interval / scale seconds until stopped; the first run is one interval in."""

    def __init__(self, schedules: Iterable[Schedule], invoke: Invoke, scale: float) -> None:
        self.plan = [(schedule, interval_seconds(schedule.expression) / scale) for schedule in schedules]
        self.invoke = invoke
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for schedule, interval in self.plan:
            thread = threading.Thread(
                target=self._run, args=(schedule, interval), name=f"schedule-{schedule.function}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, schedule: Schedule, interval: float) -> None:
        while not self._stop.wait(interval):
            started = time.monotonic()
            try:
                result = self.invoke(schedule.function, scheduler_event(schedule))
            except Exception:
                log.exception("%s (%s) failed", schedule.function, schedule.expression)
            else:
                elapsed = (time.monotonic() - started) * 1000
                log.info("%s (%s) ran: %s (%.0f ms)", schedule.function, schedule.expression, result, elapsed)
