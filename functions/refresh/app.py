"""Refresh function (hourly schedule): finds due accounts; refreshes a few inline, fans many out to SQS."""

from __future__ import annotations

from typing import Any

from smscredits import runtime
from smscredits.observability import instrument
from smscredits.services.refresh import run_scheduled


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    ports = runtime.container()
    return run_scheduled(
        ports.ledger,
        ports.statements,
        queue=ports.refresh_queue,
        inline_max=ports.settings.refresh_inline_max,
    )
