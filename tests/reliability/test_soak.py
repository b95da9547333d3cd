"""The local-mode soak (tests/reliability/soak.py) as a test; SOAK_SECONDS sets its length (default 20)."""

from __future__ import annotations

import os

import pytest

from tests.reliability.soak import report, run_soak

pytestmark = pytest.mark.blackbox


def test_soak_keeps_every_ledger_sound() -> None:
    result = run_soak(seconds=int(os.environ.get("SOAK_SECONDS", "20")), clients=32, accounts=10)
    print(report(result))

    assert result["server_errors"] == 0, result["errors"]
    assert result["checks"]["ledger_check"], result["ledger_output"]
    assert result["passed"], report(result)
    assert result["messages_accepted"] > 0 and result["statuses"].get(202, 0) > 0
    assert result["purchases_paid"] > 0 and result["credits"]["purchased"] > 0
    assert result["refresh_runs"], "the refresh timer never fired"
