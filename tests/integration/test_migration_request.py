"""A legacy account's owner asks support for the migration (POST /v1/migration-request): recorded once with the
event that tells support, shown to support and on the owner's balance; refused for a segment account."""

from __future__ import annotations

import json
from typing import Any

import pytest

from smscredits.domain.events import MIGRATION_REQUESTED
from tests import outbox
from tests.functions import admin, call, user
from tests.integration.conftest import create
from tests.integration.test_legacy import create_legacy, migrate, table_items
from tests.integration.test_send_path import balance

LEDGERS = ["dynamo", pytest.param("memory", marks=pytest.mark.memory_ledger)]


def ask(claims: dict[str, str] | None = None, body: Any = None) -> tuple[int, Any]:
    return call(
        "account_api",
        "account_post_quote",
        path="/v1/migration-request",
        body=body,
        claims=claims or user(),
    )


def account_view(account_id: str = "acct-1") -> dict[str, Any]:
    status, answer = call(
        "account_api",
        "admin_post_account",
        method="GET",
        path=f"/v1/admin/accounts/{account_id}",
        path_params={"account_id": account_id},
        body=None,
        claims=admin(),
    )
    assert status == 200, answer
    return answer


@pytest.mark.parametrize("ledger", LEDGERS)
def test_a_legacy_account_asks_once_and_support_is_told_once(service, twilio, ledger):
    create_legacy()
    assert balance()["migration_requested_at"] is None

    status, answer = ask()
    assert status == 200, answer
    requested_at = answer["migration_requested_at"]
    assert answer == {"account_id": "acct-1", "outcome": "requested", "migration_requested_at": requested_at}
    assert requested_at.startswith(service.now.strftime("%Y-%m-%dT%H:%M"))
    [told] = outbox.published(MIGRATION_REQUESTED)
    assert (told["account_id"], told["requested_by"], told["legacy"], told["plan"]) == (
        "acct-1",
        "user-acct-1",
        50,
        "starter",
    )

    service.advance(hours=1)
    status, again = ask(body={})
    assert status == 200, again
    assert again == {**answer, "outcome": "already_requested"}
    assert len(outbox.published(MIGRATION_REQUESTED)) == 1
    assert balance()["migration_requested_at"] == requested_at
    view = account_view()
    assert (view["migration_requested_at"], view["migration_requested_by"]) == (requested_at, "user-acct-1")
    assert view["migrated_at"] is None


def test_a_repeat_writes_nothing(service, twilio, dynamodb):
    create_legacy()
    ask()
    before = table_items(dynamodb)
    assert ask()[1]["outcome"] == "already_requested"
    assert table_items(dynamodb) == before


def test_support_sees_the_request_and_the_migration_that_answers_it(service, twilio):
    create_legacy()
    requested_at = ask()[1]["migration_requested_at"]
    status, migrated = migrate(dry_run=False)
    assert status == 200, migrated
    view = account_view()
    assert view["migration_requested_at"] == requested_at and view["migrated_at"] == migrated["migrated_at"]
    status, error = ask()
    assert (status, error["error"]["code"]) == (409, "not_legacy")


@pytest.mark.parametrize("ledger", LEDGERS)
def test_a_segment_account_is_refused_with_409(service, twilio, ledger):
    create()
    status, answer = ask()
    assert status == 409, answer
    assert answer["error"]["code"] == "not_legacy" and set(answer["error"]) == {"code", "message", "details"}
    assert outbox.published(MIGRATION_REQUESTED) == []
    assert account_view()["migration_requested_at"] is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [({"reason": "please"}, 422), ([], 422), ("null-ish", 400), (json.dumps({"a": 1}), 422)],
    ids=["field", "list", "text", "json"],
)
def test_a_body_is_refused_and_nothing_is_written(service, twilio, dynamodb, body, expected):
    create_legacy()
    before = table_items(dynamodb)
    status, answer = ask(body=body)
    assert (status, answer["error"]["code"]) == (expected, "invalid_request"), answer
    assert table_items(dynamodb) == before
    assert outbox.published(MIGRATION_REQUESTED) == []


def test_an_unknown_account_is_404_on_this_route(service, twilio, dynamodb):
    """Not the router's 404 for a path it does not know: this route's, for the token's account."""
    before = table_items(dynamodb)
    status, answer = ask(claims=user("nobody"))
    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert "nobody" in answer["error"]["message"] + json.dumps(answer["error"]["details"]), answer
    assert table_items(dynamodb) == before


def test_the_route_needs_a_token_with_an_account(service, twilio, dynamodb):
    create_legacy()
    before = table_items(dynamodb)
    status, answer = ask(claims={"sub": "someone", "scope": ""})  # no account claim
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    assert table_items(dynamodb) == before


def test_the_route_and_its_answer_are_in_the_openapi_document(service):
    from smscredits.api.docs_routes import openapi_document

    document = json.loads(openapi_document())
    operation = document["paths"]["/v1/migration-request"]["post"]
    assert "MigrationRequestResponse" in json.dumps(operation["responses"]["200"])
    schemas = document["components"]["schemas"]
    assert set(schemas["MigrationRequestResponse"]["properties"]) == {
        "account_id",
        "outcome",
        "migration_requested_at",
    }
    assert "migration_requested_at" in schemas["AccountResponse"]["properties"]
    assert "migration_requested_at" in schemas["BalanceResponse"]["properties"]
