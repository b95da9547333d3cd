"""Support's account lifecycle through the handlers: list with a cursor, read, change (PATCH), the billing anchor
rule, the SaaS's Stripe customer, and the Idempotency-Key every support write takes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from smscredits import runtime
from smscredits.domain.audit import check_account
from smscredits.services.refresh import refresh_account
from tests.conftest import TABLE
from tests.functions import admin, call, user
from tests.integration.conftest import create
from tests.integration.stripe_support import (
    FakeStripeHttp,
    adjust,
    checkout,
    deliver,
    get_auto_recharge,
    put_auto_recharge,
    stripe_api,
)

__all__ = ["stripe_api"]
AU = "+61491570110"


def table(dynamodb: Any) -> list[dict[str, Any]]:
    return sorted(dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"], key=json.dumps)


def admin_call(method: str, path: str, **changes: Any) -> tuple[int, Any]:
    segments = path.split("/")
    params = {"account_id": segments[4]} if len(segments) > 4 else None
    return call(
        "account_api",
        "admin_post_account",
        method=method,
        path=path,
        path_params=params,
        claims=admin(),
        **changes,
    )


def read(account_id: str = "acct-1") -> dict[str, Any]:
    status, answer = admin_call("GET", f"/v1/admin/accounts/{account_id}", body=None)
    assert status == 200, answer
    return answer


def patch(body: Any, key: str | None = "patch-1", account_id: str = "acct-1") -> tuple[int, Any]:
    headers = {"idempotency-key": key} if key is not None else {}
    return admin_call("PATCH", f"/v1/admin/accounts/{account_id}", body=body, headers=headers)


def listed(limit: int, cursor: str | None = None) -> tuple[int, Any]:
    query = {"limit": str(limit), **({"cursor": cursor} if cursor is not None else {})}
    return admin_call("GET", "/v1/admin/accounts", body=None, query=query)


def audit(account_id: str = "acct-1") -> list[str]:
    return check_account(*runtime.container().statements.partition(account_id))


# ---- read and list ----------------------------------------------------------------------------------------


def test_an_account_reads_with_its_settings_and_billing_period(service):
    create(stripe_customer_id="cus_SaaS42", low_balance_threshold=7)
    assert read() == {
        "account_id": "acct-1",
        "plan": "starter",
        "pending_plan": None,
        "credit_model": "segment",
        "home_region": "AU",
        "billing_anchor": "2026-01-05",
        "period_start": "2026-11-05",
        "next_refresh_at": "2026-12-05T00:00:00Z",
        "stripe_customer_id": "cus_SaaS42",
        "card_on_file": False,
        "low_balance_threshold": 7,
        "smart_encoding": False,
        "batch_rate_per_second": None,
        "created_at": "2026-11-10T12:00:00Z",
        "migrated_at": None,
        "migration_requested_at": None,
        "migration_requested_by": None,
    }


def test_the_low_balance_threshold_defaults_to_20(service):
    create()
    assert read()["low_balance_threshold"] == 20


def test_an_unknown_account_is_404_and_a_user_token_is_403(service):
    status, answer = admin_call("GET", "/v1/admin/accounts/nobody", body=None)
    assert (status, answer["error"]["code"]) == (404, "not_found")
    create()
    status, _ = call(
        "account_api",
        "admin_post_account",
        method="GET",
        path="/v1/admin/accounts/acct-1",
        path_params={"account_id": "acct-1"},
        body=None,
        claims=user(),
    )
    assert status == 403


def test_accounts_are_listed_a_page_at_a_time_with_a_cursor(service, dynamodb):
    for account_id in ("c-3", "a-1", "e-5", "b-2", "d-4"):
        create(account_id)
    seen, cursor = [], None
    for _ in range(5):
        status, page = listed(2, cursor)
        assert status == 200, page
        assert len(page["accounts"]) <= 2
        seen += [account["account_id"] for account in page["accounts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["a-1", "b-2", "c-3", "d-4", "e-5"]
    assert cursor is None


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"limit": "101"}, {"cursor": "%%%"}, {"cursor": "bm90IGFuIGlk!"}]
)
def test_a_bad_list_query_is_422(service, query):
    create()
    status, answer = admin_call("GET", "/v1/admin/accounts", body=None, query=query)
    assert status == 422 and answer["error"]["code"] == "invalid_request", answer


# ---- the billing anchor -----------------------------------------------------------------------------------


def test_a_future_anchor_at_creation_is_refused_and_nothing_is_written(service, dynamodb):
    before = table(dynamodb)
    body = {"account_id": "acct-1", "plan": "starter", "billing_anchor": "2027-01-15", "home_region": "AU"}
    status, answer = call("account_api", "admin_post_account", body=body, claims=admin())
    assert (status, answer["error"]["code"]) == (422, "billing_anchor_in_future"), answer
    assert answer["error"]["details"] == {"billing_anchor": "2027-01-15", "today": "2026-11-10"}
    assert table(dynamodb) == before


def test_a_future_anchor_by_patch_is_refused_and_nothing_is_written(service, dynamodb):
    create()
    before = table(dynamodb)
    status, answer = patch({"billing_anchor": "2027-01-15", "low_balance_threshold": 3})
    assert (status, answer["error"]["code"]) == (422, "billing_anchor_in_future"), answer
    assert table(dynamodb) == before


def test_a_new_billing_day_moves_the_next_refresh_and_the_refresh_comes_then(service):
    """Today 2026-11-10, anchored on the 5th (period 11-05 .. 12-05). Anchored on the 20th from now on: the current
    period runs to 11-20, nothing granted or lapsed at the change; the refresh comes on 11-20, once."""
    create()
    status, answer = patch({"billing_anchor": "2026-10-20"})
    assert status == 200, answer
    assert (answer["billing_anchor"], answer["period_start"], answer["next_refresh_at"]) == (
        "2026-10-20",
        "2026-11-05",
        "2026-11-20T00:00:00Z",
    )
    ledger = runtime.container().ledger
    assert ledger.get_account("acct-1").pools["included"] == 50
    early = refresh_account(ledger, "acct-1", datetime(2026, 11, 19, 23, tzinfo=UTC))
    assert not early.refreshed
    due = refresh_account(ledger, "acct-1", datetime(2026, 11, 20, 0, 30, tzinfo=UTC))
    assert due.refreshed and due.period_start == "2026-11-20"
    assert read()["next_refresh_at"] == "2026-12-20T00:00:00Z"
    old_day = refresh_account(ledger, "acct-1", datetime(2026, 12, 5, 0, 30, tzinfo=UTC))
    assert not old_day.refreshed
    grants = [e.amount for e in runtime.container().statements.partition("acct-1")[1] if e.kind == "grant"]
    assert grants == [50, 50]
    assert audit() == []


def test_the_same_billing_day_in_another_month_changes_no_date(service):
    create()
    status, answer = patch({"billing_anchor": "2025-03-05"})
    assert status == 200 and (answer["period_start"], answer["next_refresh_at"]) == (
        "2026-11-05",
        "2026-12-05T00:00:00Z",
    )


# ---- the other settings -------------------------------------------------------------------------------------


def test_a_patch_changes_only_what_it_names(service):
    create()
    status, answer = patch({"home_region": "UK", "low_balance_threshold": 0, "smart_encoding": True})
    assert status == 200, answer
    assert answer == {**read(), "home_region": "GB", "low_balance_threshold": 0, "smart_encoding": True}
    assert read()["home_region"] == "GB" and read()["billing_anchor"] == "2026-01-05"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"stripe_customer_id": "acme"},
        {"stripe_customer_id": "cus_"},
        {"low_balance_threshold": -1},
        {"low_balance_threshold": "5"},
        {"home_region": "FR"},
        {"billing_anchor": "2026-02-30"},
        {"smart_encoding": "yes"},
        {"plan": "growth"},
        {"low_balance_threshold": 5, "home_region": "FR"},
        {"batch_rate_per_second": 0},
        {"batch_rate_per_second": 101},
        {"batch_rate_per_second": 2.5},
    ],
)
def test_a_bad_patch_is_422_and_writes_nothing(service, dynamodb, body):
    create()
    before = table(dynamodb)
    status, answer = patch(body)
    assert status == 422 and answer["error"]["code"] in {"invalid_request"}, answer
    assert table(dynamodb) == before


def test_a_patch_of_an_unknown_account_is_404(service, dynamodb):
    status, answer = patch({"smart_encoding": True}, account_id="nobody")
    assert (status, answer["error"]["code"]) == (404, "not_found")


# ---- the SaaS's Stripe customer -----------------------------------------------------------------------------


def test_the_customer_set_at_creation_pays_for_checkout_and_no_customer_is_created(service, stripe_api):
    create(stripe_customer_id="cus_SaaS42")
    bought = checkout(stripe_api)
    assert bought.customer == "cus_SaaS42"
    assert stripe_api.of("/v1/customers") == []


def test_the_customer_set_by_patch_pays_for_checkout_and_recharge(service, stripe_api: FakeStripeHttp):
    create()
    assert patch({"stripe_customer_id": "cus_SaaS42"})[0] == 200
    status, answer = put_auto_recharge(
        {"enabled": True, "regions": {"AU": {"packs": 1, "threshold": 0}}, "monthly_cap_cents": 5000}
    )
    assert status == 200, answer
    deliver(checkout(stripe_api).session_event())
    assert get_auto_recharge()["card_on_file"] is True
    adjust("included", -50, key="drain-included")
    adjust("purchased:AU", -200, key="drain-au")
    status, answer = call(
        "send",
        "send_post_message",
        body={"to": AU, "body": "Hi"},
        headers={"idempotency-key": "s1"},
        claims=user(),
    )
    assert status == 202, answer
    [charge] = stripe_api.charges
    assert charge["params"]["customer"] == "cus_SaaS42"
    assert stripe_api.of("/v1/customers") == []


def test_a_new_customer_drops_the_card_of_the_old_one(service, stripe_api):
    create(stripe_customer_id="cus_Old1")
    put_auto_recharge({"enabled": True, "regions": {"AU": {"packs": 1}}, "monthly_cap_cents": 5000})
    deliver(checkout(stripe_api).session_event())
    assert read()["card_on_file"] is True
    status, answer = patch({"stripe_customer_id": "cus_New2"})
    assert status == 200 and (answer["stripe_customer_id"], answer["card_on_file"]) == ("cus_New2", False)
    assert get_auto_recharge()["card_on_file"] is False


# ---- Idempotency-Key on support writes ----------------------------------------------------------------------


def test_a_patch_needs_an_idempotency_key_and_a_retry_applies_once(service, dynamodb):
    create()
    before = table(dynamodb)
    status, answer = patch({"low_balance_threshold": 5}, key=None)
    assert (status, answer["error"]["code"]) == (400, "idempotency_key_required")
    assert table(dynamodb) == before
    first = patch({"low_balance_threshold": 5}, key="k1")
    assert first[0] == 200
    patch({"low_balance_threshold": 9}, key="k2")
    after = table(dynamodb)
    assert patch({"low_balance_threshold": 5}, key="k1") == first  # the first answer, not a second write
    assert table(dynamodb) == after and read()["low_balance_threshold"] == 9
    status, answer = patch({"low_balance_threshold": 6}, key="k1")
    assert (status, answer["error"]["code"]) == (422, "idempotency_key_reused")
    assert table(dynamodb) == after


def plan(plan_name: str, key: str | None) -> tuple[int, Any]:
    headers = {"idempotency-key": key} if key is not None else {}
    return admin_call("PUT", "/v1/admin/accounts/acct-1/plan", body={"plan": plan_name}, headers=headers)


def test_a_plan_change_needs_an_idempotency_key_and_a_retry_answers_the_first_answer(service, dynamodb):
    create()
    before = table(dynamodb)
    status, answer = plan("growth", None)
    assert (status, answer["error"]["code"]) == (400, "idempotency_key_required")
    assert table(dynamodb) == before
    first = plan("growth", "p1")
    assert first[0] == 200 and first[1]["granted"] == 50
    after = table(dynamodb)
    assert plan("growth", "p1") == first  # the retry answers what the first call did
    assert table(dynamodb) == after
    status, answer = plan("starter", "p1")
    assert (status, answer["error"]["code"]) == (422, "idempotency_key_reused")
    again = plan("growth", str(uuid.uuid4()))  # another key: the plan is already in place
    assert (again[1]["granted"], again[1]["effective"]) == (0, "unchanged")
    assert runtime.container().ledger.get_account("acct-1").pools["included"] == 100
    assert audit() == []


def test_an_adjustment_needs_an_idempotency_key(service, dynamodb):
    create()
    before = table(dynamodb)
    status, answer = admin_call(
        "POST",
        "/v1/admin/accounts/acct-1/adjustments",
        body={"pool": "included", "credits": 5, "reason": "goodwill"},
    )
    assert (status, answer["error"]["code"]) == (400, "idempotency_key_required")
    assert table(dynamodb) == before
