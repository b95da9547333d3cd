"""Refresh function (hourly schedule): finds due accounts; refreshes a few inline, fans many out to SQS."""

from __future__ import annotations

from typing import Any

from smscredits import runtime
from smscredits.observability import instrument
from smscredits.services.refresh import run_scheduled
from smscredits.settings import get_settings


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    return run_scheduled(
        runtime.store(),
        runtime.reader(),
        events=runtime.events(),
        queue=runtime.refresh_queue(),
        inline_max=get_settings().refresh_inline_max,
    )
