"""Tenant isolation, auth refusals on every route, and the OpenAPI document against template.yaml."""

from __future__ import annotations

import re
from typing import Any

import pytest

from local.template import routes
from tests.functions import admin, call, user
from tests.integration.conftest import create
from tests.integration.test_send_path import AU, balance, send


def test_account_a_never_reads_or_moves_account_b(service, twilio):
    create("acct-a")
    create("acct-b")
    _, sent = send(key="b-1", account="acct-b")
    message_id = sent["message_id"]
    status, answer = call(
        "account_api",
        "account_get_message",
        claims=user("acct-a"),
        path=f"/v1/messages/{message_id}",
        path_params={"message_id": message_id},
    )
    assert status == 404 and answer["error"]["code"] == "not_found"
    _, ledger = call("account_api", "account_get_ledger", claims=user("acct-a"))
    assert all(e["reference"].get("message_id") != message_id for e in ledger["entries"])
    # The same Idempotency-Key from another account is another message, never a replay of B's.
    _, mine = send(key="b-1", account="acct-a")
    assert mine["message_id"] != message_id
    assert balance("acct-b")["included"]["available"] == 49
    assert balance("acct-a")["included"]["available"] == 49


def test_a_body_cannot_choose_the_account(service, twilio):
    create("acct-a")
    status, answer = call(
        "send",
        "send_post_message",
        claims=user("acct-a"),
        headers={"idempotency-key": "x"},
        body={"to": AU, "body": "hi", "account_id": "acct-b"},
    )
    assert status == 422 and answer["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("claims", [None, {}, {"sub": "someone"}, {"sub": "x", "account_id": ""}])
def test_missing_or_bad_token_is_401(service, twilio, claims):
    create()
    status, answer = call("account_api", "account_get_balance", claims=claims)
    assert status == 401 and answer["error"]["code"] == "unauthorized"
    status, answer = call(
        "send",
        "send_post_message",
        claims=claims,
        headers={"idempotency-key": "k"},
        body={"to": AU, "body": "hi"},
    )
    assert status == 401


def test_user_token_on_support_routes_is_403(service, twilio):
    create()
    body = {"account_id": "acct-x", "plan": "starter", "billing_anchor": "2026-01-05", "home_region": "AU"}
    status, answer = call("account_api", "admin_post_account", body=body, claims=user())
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, _ = call(
        "account_api",
        "account_get_balance",
        claims=user(),
        path="/v1/admin/accounts/acct-1/balance",
        path_params={"account_id": "acct-1"},
    )
    assert status == 403


def test_support_reads_any_balance_and_adjusts_with_a_reason_once(service, twilio):
    create()
    path = "/v1/admin/accounts/acct-1/adjustments"
    body = {"pool": "purchased:UK", "credits": 30, "reason": "goodwill"}
    for _ in range(2):
        status, answer = call(
            "account_api",
            "admin_post_account",
            body=body,
            claims=admin(),
            path=path,
            path_params={"account_id": "acct-1"},
            headers={"idempotency-key": "adj-1"},
        )
        assert status == 200 and answer == {
            "account_id": "acct-1",
            "pool": "purchased:GB",
            "credits": 30,
            "balance_after": 30,
        }
    status, answer = call(
        "account_api",
        "account_get_balance",
        claims=admin(),
        path="/v1/admin/accounts/acct-1/balance",
        path_params={"account_id": "acct-1"},
    )
    assert status == 200 and answer["purchased"]["GB"] == 30
    below = {"pool": "purchased:GB", "credits": -31, "reason": "too much"}
    status, answer = call(
        "account_api",
        "admin_post_account",
        body=below,
        claims=admin(),
        path=path,
        path_params={"account_id": "acct-1"},
        headers={"idempotency-key": "adj-2"},
    )
    assert status == 422 and answer["error"]["details"]["available"] == 30
    _, ledger = call("account_api", "account_get_ledger", claims=user())
    adjustment = ledger["entries"][0]
    assert adjustment["kind"] == "adjustment"
    assert adjustment["reference"] == {"actor": "support-1", "reason": "goodwill"}


def test_creating_an_existing_account_is_409_and_changes_nothing(service, twilio):
    create()
    body = {"account_id": "acct-1", "plan": "growth", "billing_anchor": "2026-01-05", "home_region": "AU"}
    status, answer = call("account_api", "admin_post_account", body=body, claims=admin())
    assert status == 409 and answer["error"]["code"] == "account_exists"
    assert balance()["plan"] == "starter" and balance()["included"]["available"] == 50


def test_plan_upgrade_grants_the_difference_once_and_downgrade_waits(service, twilio):
    create()
    path = "/v1/admin/accounts/acct-1/plan"
    for _ in range(2):
        status, answer = call(
            "account_api",
            "admin_post_account",
            body={"plan": "growth"},
            claims=admin(),
            method="PUT",
            path=path,
            path_params={"account_id": "acct-1"},
            headers={"idempotency-key": "plan-up"},
        )
    assert status == 200 and answer["plan"] == "growth"
    assert balance()["included"]["available"] == 100 and balance()["included"]["allowance"] == 100
    status, answer = call(
        "account_api",
        "admin_post_account",
        body={"plan": "starter"},
        claims=admin(),
        method="PUT",
        path=path,
        path_params={"account_id": "acct-1"},
        headers={"idempotency-key": "plan-down"},
    )
    assert answer["effective"] == "next_refresh" and answer["pending_plan"] == "starter"
    assert balance()["included"]["available"] == 100 and balance()["plan"] == "growth"


def test_openapi_lists_every_route_of_the_template(service):
    status, document = call("account_api", "account_get_balance", claims=None, path="/v1/openapi.json")
    assert status == 200
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    public_pages = {"/v1/openapi.json", "/v1/docs", "/v1/docs/{asset}", "/dashboard"}
    for route in routes():
        if route.path in public_pages:
            continue
        path = re.sub(r"\{(\w+)\}", r"{\1}", route.path)
        assert (route.method, path) in documented, (
            f"{route.method} {route.path} missing from /v1/openapi.json"
        )


def test_unknown_route_is_404_with_the_error_shape(service):
    status, answer = call("account_api", "account_get_balance", claims=user(), path="/v1/nothing-here")
    assert status == 404 and answer == {
        "error": {"code": "not_found", "message": "No such route.", "details": {}}
    }


@pytest.mark.parametrize("path", ["/v1/ledger", "/v1/ledger.csv"])
def test_the_ledger_of_an_account_that_does_not_exist_is_404(service, twilio, path):
    status, answer = call("account_api", "account_get_ledger", claims=user("acct-ghost"), path=path, query={})
    assert status == 404 and answer["error"]["code"] == "not_found"
    assert answer["error"]["details"] == {"account_id": "acct-ghost"}


def test_an_empty_ledger_page_of_an_existing_account_is_still_200(service, twilio):
    create()
    status, answer = call("account_api", "account_get_ledger", claims=user(), query={"kind": "clawback"})
    assert status == 200 and answer == {"entries": [], "next_cursor": None}


def _adjust(body: dict[str, object], key: str) -> tuple[int, Any]:
    return call(
        "account_api",
        "admin_post_account",
        body=body,
        claims=admin(),
        path="/v1/admin/accounts/acct-1/adjustments",
        path_params={"account_id": "acct-1"},
        headers={"idempotency-key": key},
    )


def test_an_adjustment_key_replayed_with_another_body_is_refused(service, twilio):
    create()
    first = {"pool": "purchased:AU", "credits": 30, "reason": "goodwill"}
    status, answer = _adjust(first, "adj-reused")
    assert status == 200 and answer["balance_after"] == 30
    for other in (
        {**first, "credits": 31},
        {**first, "pool": "purchased:GB"},
        {**first, "reason": "another reason"},
    ):
        status, refused = _adjust(other, "adj-reused")
        assert status == 422 and refused["error"]["code"] == "idempotency_key_reused", other
    assert _adjust(first, "adj-reused") == (200, answer)
    assert balance()["purchased"] == {"AU": 30, "GB": 0, "NZ": 0, "US": 0}


@pytest.mark.parametrize("reason", ["   ", "\x00\x01", "\u200b\t\n", "ok\x00"])
def test_an_adjustment_without_a_readable_reason_is_refused_and_writes_nothing(
    service, twilio, dynamodb, reason
):
    create()
    before = dynamodb.scan(TableName="CreditsTable")["Items"]
    status, answer = _adjust({"pool": "purchased:AU", "credits": 5, "reason": reason}, "adj-blank")
    assert status == 422 and answer["error"]["code"] == "invalid_request"
    assert "reason" in answer["error"]["details"]
    assert dynamodb.scan(TableName="CreditsTable")["Items"] == before


def test_an_adjustment_reason_is_recorded_trimmed(service, twilio):
    create()
    assert _adjust({"pool": "purchased:AU", "credits": 5, "reason": "  goodwill \n"}, "adj-trim")[0] == 200
    _, ledger = call("account_api", "account_get_ledger", claims=user())
    assert ledger["entries"][0]["reference"] == {"actor": "support-1", "reason": "goodwill"}
