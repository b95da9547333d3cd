"""Plan changes through the support route: an upgrade grants the difference once, a downgrade waits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from smscredits import runtime
from smscredits.domain.audit import check_account
from smscredits.services.refresh import refresh_account
from tests.functions import admin, call
from tests.integration.conftest import create
from tests.integration.test_send_path import balance

# Use cases: they run on the in-memory ledger (tests/contract holds it to DynamoDB's rules).
pytestmark = pytest.mark.memory_ledger


def change(plan: str, account_id: str = "acct-1", key: str | None = None) -> dict[str, Any]:
    """A plan change; each call has a fresh Idempotency-Key unless `key` is given."""
    status, answer = call(
        "account_api",
        "admin_post_account",
        method="PUT",
        path=f"/v1/admin/accounts/{account_id}/plan",
        path_params={"account_id": account_id},
        body={"plan": plan},
        claims=admin(),
        headers={"idempotency-key": key or uuid.uuid4().hex},
    )
    assert status == 200, answer
    return answer


def grants() -> list[int]:
    return [e.amount for e in runtime.container().statements.partition("acct-1")[1] if e.kind == "grant"]


def audit() -> list[str]:
    return check_account(*runtime.container().statements.partition("acct-1"))


def refresh(service: Any) -> None:
    service.now = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    assert refresh_account(runtime.container().ledger, "acct-1", service.now).refreshed


def test_upgrade_grants_the_difference_once(service, twilio):
    create()
    assert change("growth") == {
        "account_id": "acct-1",
        "plan": "growth",
        "pending_plan": None,
        "granted": 50,
        "effective": "now",
    }
    again = change("growth")
    assert (again["granted"], again["effective"]) == (0, "unchanged")
    assert balance()["included"] == {**balance()["included"], "available": 100, "allowance": 100}
    assert grants() == [50, 50]
    refresh(service)
    assert balance()["included"]["available"] == 100
    assert audit() == []


def test_downgrade_waits_for_the_next_refresh(service, twilio):
    create(plan="growth")
    answer = change("starter")
    assert (answer["plan"], answer["pending_plan"], answer["granted"], answer["effective"]) == (
        "growth",
        "starter",
        0,
        "next_refresh",
    )
    assert balance()["included"]["available"] == 100
    refresh(service)
    view = balance()
    assert (view["plan"], view["pending_plan"], view["included"]["available"]) == ("starter", None, 50)
    assert audit() == []


def test_changing_back_and_forth_in_one_period_keeps_the_last_word(service, twilio):
    """Downgrade, cancel, downgrade again: the second downgrade is a new change, not a duplicate."""
    create(plan="growth")
    change("starter")
    cancelled = change("growth")
    assert (cancelled["pending_plan"], cancelled["granted"]) == (None, 0)
    again = change("starter")
    assert (again["pending_plan"], again["effective"]) == ("starter", "next_refresh")
    refresh(service)
    assert balance()["plan"] == "starter" and balance()["included"]["available"] == 50
    assert grants() == [100, 50]
    assert audit() == []


def test_upgrade_after_a_pending_downgrade_grants_from_the_current_allowance(service, twilio):
    create(plan="essentials")
    change("starter")
    answer = change("growth")
    assert (answer["plan"], answer["pending_plan"], answer["granted"]) == ("growth", None, 25)
    assert balance()["included"]["available"] == 100
    assert audit() == []
