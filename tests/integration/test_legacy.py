"""Legacy accounts through the handlers: flat per-region cost, refresh into the one pool, the migration."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from smscredits import runtime
from smscredits.domain.audit import check_account
from smscredits.domain.movements import HoldRequest
from smscredits.services.refresh import refresh_account
from tests.conftest import TABLE
from tests.functions import admin, call, user
from tests.integration.conftest import create
from tests.integration.test_send_path import balance, send

# Use cases: they run on the in-memory ledger (tests/contract holds it to DynamoDB's rules).
pytestmark = pytest.mark.memory_ledger

LONG = "a" * 400  # three GSM-7 segments


def create_legacy(account_id: str = "acct-1") -> dict[str, Any]:
    return create(account_id, created_at="2025-06-01T09:00:00Z")


def migrate(
    dry_run: bool, account_id: str = "acct-1", claims: dict[str, str] | None = None, key: str | None = None
) -> tuple[int, Any]:
    """A migration call; each call has a fresh Idempotency-Key unless `key` is given."""
    path = f"/v1/admin/accounts/{account_id}/migration"
    return call(
        "account_api",
        "admin_post_account",
        path=path,
        path_params={"account_id": account_id},
        body={"dry_run": dry_run},
        claims=claims or admin(),
        headers={"idempotency-key": key or uuid.uuid4().hex},
    )


def table_items(dynamodb: Any) -> list[dict[str, Any]]:
    return sorted(
        dynamodb.scan(TableName=TABLE)["Items"], key=lambda item: (item["pk"]["S"], item["sk"]["S"])
    )


def audit(account_id: str = "acct-1") -> list[str]:
    return check_account(*runtime.container().statements.partition(account_id))


def test_created_before_the_cutoff_is_legacy(service, twilio):
    answer = create_legacy()
    assert (answer["credit_model"], answer["legacy"], answer["included"]["available"]) == ("legacy", 50, 0)
    assert create("new")["credit_model"] == "segment"


def test_a_legacy_message_costs_the_flat_rate_whatever_its_length(service, twilio):
    create_legacy()
    status, answer = send(LONG)
    assert status == 202, answer
    assert (answer["segments"], answer["credits"]) == (3, 1)
    assert answer["funding"] == [{"pool": "legacy", "credits": 1}]
    assert balance()["legacy"] == 49
    assert audit() == []


def test_the_legacy_rate_is_configuration(service, twilio, monkeypatch):
    create_legacy()
    monkeypatch.setattr(runtime.container().ledger, "legacy_rates", {"AU": 2, "US": 1, "GB": 1, "NZ": 3})
    _, answer = send(LONG)
    assert answer["credits"] == 2 and balance()["legacy"] == 48


def test_legacy_refresh_tops_up_the_pool_without_lapse(service, twilio):
    create_legacy()
    send(LONG)
    service.now = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    assert refresh_account(runtime.container().ledger, "acct-1", service.now).refreshed
    assert balance()["legacy"] == 49 + 50
    assert audit() == []


def test_dry_run_shows_before_and_after_and_writes_nothing(service, twilio, dynamodb):
    create_legacy()
    send(LONG)
    before = table_items(dynamodb)
    status, answer = migrate(dry_run=True)
    assert status == 200, answer
    assert answer["outcome"] == "preview" and answer["dry_run"] is True
    assert answer["before"]["credit_model"] == "legacy" and answer["before"]["legacy"] == 49
    assert answer["after"] == {
        "credit_model": "segment",
        "legacy": None,
        "included": 0,
        "purchased": {"AU": 49, "US": 0, "GB": 0, "NZ": 0},
        "held": 0,
    }
    assert answer["converted"] == 49 and answer["ratio"] == "1:1"
    assert table_items(dynamodb) == before


def test_migration_converts_switches_and_is_audited(service, twilio):
    create_legacy()
    send(LONG)
    status, answer = migrate(dry_run=False)
    assert status == 200, answer
    assert answer["outcome"] == "migrated" and answer["converted"] == 49
    assert answer["after"]["purchased"]["AU"] == 49 and answer["migrated_at"]
    view = balance()
    assert view["credit_model"] == "segment" and view["legacy"] is None
    assert view["purchased"]["AU"] == 49 and view["included"]["available"] == 0
    entries = [e for e in runtime.container().statements.partition("acct-1")[1] if e.kind == "migration"]
    assert [(e.pool, e.amount, e.balance_after) for e in entries] == [
        ("legacy", -49, 0),
        ("purchased:AU", 49, 49),
    ]
    assert all(e.reference["actor"] == "support-1" and e.op_id == "migration" for e in entries)
    assert audit() == []


def test_the_ratio_is_configuration_and_rounds_down(service, twilio, monkeypatch):
    from smscredits.settings import get_settings

    create_legacy()
    send(LONG)  # 49 left
    monkeypatch.setenv("MIGRATION_RATIO", "3:2")
    get_settings.cache_clear()
    runtime.use(runtime.container().replace(settings=get_settings()))
    _, answer = migrate(dry_run=False)
    assert (answer["converted"], answer["ratio"]) == (73, "3:2")
    assert audit() == []


def test_a_second_migration_changes_nothing(service, twilio, dynamodb):
    create_legacy()
    migrate(dry_run=False)
    before = table_items(dynamodb)
    for dry_run in (False, True):
        status, answer = migrate(dry_run=dry_run)
        assert status == 200
        assert answer["outcome"] == "already_migrated" and answer["converted"] == 0
        assert answer["before"] == answer["after"]
    assert table_items(dynamodb) == before


def test_a_migration_retried_with_its_key_answers_as_the_first_time(service, twilio, dynamodb):
    create_legacy()
    status, first = migrate(dry_run=False, key="mig-1")
    assert status == 200 and (first["outcome"], first["converted"]) == ("migrated", 50)
    before = table_items(dynamodb)
    assert migrate(dry_run=False, key="mig-1") == (200, first)
    assert table_items(dynamodb) == before
    assert audit() == []


def test_a_migration_without_an_idempotency_key_is_refused(service, twilio, dynamodb):
    create_legacy()
    before = table_items(dynamodb)
    status, answer = call(
        "account_api",
        "admin_post_account",
        path="/v1/admin/accounts/acct-1/migration",
        path_params={"account_id": "acct-1"},
        body={"dry_run": False},
        claims=admin(),
    )
    assert (status, answer["error"]["code"]) == (400, "idempotency_key_required")
    assert table_items(dynamodb) == before


def test_migration_waits_for_pending_holds(service, twilio, dynamodb):
    """Our rule: a hold drew legacy credits; voided after the switch it would return them to a pool the
    account no longer has, so the migration is refused (409) until holds settle. Nothing is written."""
    create_legacy()
    runtime.container().ledger.hold("acct-1", HoldRequest("in-flight", 1, "AU", "h", {}))
    before = table_items(dynamodb)
    for dry_run in (True, False):
        status, answer = migrate(dry_run=dry_run)
        assert status == 409 and answer["error"]["code"] == "holds_pending"
        assert answer["error"]["details"] == {"held": 1}
    assert table_items(dynamodb) == before
    store = runtime.container().ledger
    store.void(store.get_hold("acct-1", "in-flight"))
    assert migrate(dry_run=False)[1]["converted"] == 50
    assert audit() == []


def test_a_send_after_migration_is_a_segment_send(service, twilio):
    create_legacy()
    migrate(dry_run=False)  # 50 legacy → 50 purchased:AU, included 0 until the next refresh
    _, answer = send(LONG, key="after")
    assert (answer["segments"], answer["credits"]) == (3, 3)
    assert answer["funding"] == [{"pool": "purchased:AU", "credits": 3}]
    service.now = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    refresh_account(runtime.container().ledger, "acct-1", service.now)
    _, answer = send("short", key="after-refresh")
    assert answer["funding"] == [{"pool": "included", "credits": 1}]
    view = balance()
    assert (view["included"]["available"], view["purchased"]["AU"]) == (49, 47)
    assert audit() == []


def test_migration_needs_the_admin_scope(service, twilio):
    create_legacy()
    status, answer = migrate(dry_run=False, claims=user())
    assert status == 403, answer
    assert balance()["credit_model"] == "legacy"


def test_the_route_is_in_the_openapi_document(service):
    import json

    from smscredits.api.docs_routes import openapi_document

    paths = json.loads(openapi_document())["paths"]
    assert "post" in paths["/v1/admin/accounts/{account_id}/migration"]


@pytest.mark.parametrize("body", [{}, {"dry_run": "yes"}, {"dry_run": True, "extra": 1}])
def test_a_malformed_migration_request_is_refused(service, twilio, body):
    create_legacy()
    status, _ = call(
        "account_api",
        "admin_post_account",
        path="/v1/admin/accounts/acct-1/migration",
        path_params={"account_id": "acct-1"},
        body=body,
        claims=admin(),
        headers={"idempotency-key": "m-1"},
    )
    assert status == 422
