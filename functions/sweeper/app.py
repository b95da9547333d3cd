"""Sweeper function (schedule): voids holds left pending past the grace period."""

from __future__ import annotations

from typing import Any

from smscredits import runtime
from smscredits.observability import instrument
from smscredits.services.settlement import sweep_stale_holds


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    ports = runtime.container()
    return sweep_stale_holds(ports.ledger, ports.statements)
