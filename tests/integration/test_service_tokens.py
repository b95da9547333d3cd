"""Service tokens (docs/product.md §9): a `service` token acts for the account its X-Account-Id header names, on
every account route; a user's token never does, whatever header it carries."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from smscredits.api.http import Auth
from tests.conftest import TABLE
from tests.functions import Context, admin, call, event, load_function, user
from tests.integration.conftest import create
from tests.integration.test_observability import stdout
from tests.integration.test_send_path import AU, balance

__all__ = ["stdout"]


def service_token(scope: str = "service") -> dict[str, str]:
    """The SaaS backend's machine token: no account claim of its own."""
    return {"sub": "saas-backend", "scope": scope}


def table(dynamodb: Any) -> list[dict[str, Any]]:
    return sorted(dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"], key=json.dumps)


def as_service(
    fixture: str, function: str = "account_api", account: str | None = "acct-2", **changes: Any
) -> Any:
    headers = {**changes.pop("headers", {}), **({"X-Account-Id": account} if account is not None else {})}
    return call(function, fixture, claims=changes.pop("claims", service_token()), headers=headers, **changes)


def send_as(claims: dict[str, str], account_header: str | None, key: str = "k1") -> tuple[int, Any]:
    headers = {"idempotency-key": key, **({"X-Account-Id": account_header} if account_header else {})}
    return call("send", "send_post_message", body={"to": AU, "body": "Hello"}, headers=headers, claims=claims)


def test_a_service_token_reads_and_sends_for_the_account_it_names(service, twilio):
    create("acct-1")
    create("acct-2")
    status, answer = as_service("account_get_balance")
    assert status == 200 and answer["account_id"] == "acct-2"
    status, sent = send_as(service_token(), "acct-2")
    assert status == 202, sent
    assert balance("acct-2")["included"]["available"] == 49
    assert balance("acct-1")["included"]["available"] == 50
    message = sent["message_id"]
    path = f"/v1/messages/{message}"
    status, _ = as_service("account_get_message", path=path, path_params={"message_id": message})
    assert status == 200
    status, other = as_service(
        "account_get_message", account="acct-1", path=path, path_params={"message_id": message}
    )
    assert (status, other["error"]["code"]) == (404, "not_found")  # another account's message


def test_a_service_token_without_the_header_is_400_and_sends_nothing(service, twilio, dynamodb):
    create("acct-2")
    before = table(dynamodb)
    status, answer = send_as(service_token(), None)
    assert (status, answer["error"]["code"]) == (400, "account_header_required"), answer
    assert answer["error"]["details"] == {"header": "X-Account-Id"}
    assert table(dynamodb) == before and twilio.sent == []


def test_a_service_token_with_its_own_account_claim_still_needs_the_header(service, twilio):
    create("acct-2")
    status, answer = as_service(
        "account_get_balance", account=None, claims={**service_token(), "account_id": "acct-2"}
    )
    assert (status, answer["error"]["code"]) == (400, "account_header_required")


@pytest.mark.parametrize("header", ["acct 2", "acct-2/../acct-1", "a" * 65, "ACCT#acct-2", "é"])
def test_a_malformed_header_is_400(service, twilio, header):
    create("acct-2")
    status, answer = as_service("account_get_balance", account=header)
    assert (status, answer["error"]["code"]) == (400, "account_header_invalid"), answer


def test_a_service_token_for_an_account_that_does_not_exist_is_404(service, twilio, dynamodb):
    before = table(dynamodb)
    status, answer = as_service("account_get_balance", account="nobody")
    assert (status, answer["error"]["code"]) == (404, "not_found")
    status, answer = send_as(service_token(), "nobody")
    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert table(dynamodb) == before and twilio.sent == []


def test_a_user_token_with_the_header_acts_for_its_own_account(service, twilio):
    create("acct-1")
    create("acct-2")
    status, answer = call(
        "account_api", "account_get_balance", claims=user("acct-1"), headers={"X-Account-Id": "acct-1"}
    )
    assert status == 200 and answer["account_id"] == "acct-1"


def test_a_forged_header_on_a_user_token_still_acts_for_the_tokens_account(service, twilio):
    create("acct-1")
    create("acct-2")
    status, answer = call(
        "account_api", "account_get_balance", claims=user("acct-1"), headers={"X-Account-Id": "acct-2"}
    )
    assert status == 200 and answer["account_id"] == "acct-1"
    status, sent = send_as(user("acct-1"), "acct-2")
    assert status == 202, sent
    assert balance("acct-1")["included"]["available"] == 49
    assert balance("acct-2")["included"]["available"] == 50


def test_a_token_with_admin_and_service_scopes_is_a_service_token_on_account_routes(service, twilio):
    """Our rule: on an account route the `service` scope decides (the header is required); on a support
    route the `admin` scope does. An admin-only token keeps acting for its own account claim."""
    create("acct-2")
    both = {**admin(), "scope": "admin service"}
    status, answer = as_service("account_get_balance", account=None, claims=both)
    assert (status, answer["error"]["code"]) == (400, "account_header_required")
    status, answer = as_service("account_get_balance", claims=both)
    assert status == 200 and answer["account_id"] == "acct-2"
    status, answer = call(
        "account_api",
        "admin_post_account",
        method="GET",
        path="/v1/admin/accounts/acct-2/balance",
        path_params={"account_id": "acct-2"},
        body=None,
        claims=both,
    )
    assert status == 200 and answer["account_id"] == "acct-2"


def test_a_service_token_cannot_use_support_routes(service, twilio):
    create("acct-2")
    status, answer = call(
        "account_api",
        "admin_post_account",
        method="GET",
        path="/v1/admin/accounts/acct-2/balance",
        path_params={"account_id": "acct-2"},
        body=None,
        claims=service_token(),
        headers={"X-Account-Id": "acct-2"},
    )
    assert (status, answer["error"]["code"]) == (403, "forbidden")


ACCOUNT_ROUTES = [
    (function, route.method, route.path)
    for function in ("account_api", "checkout", "send")
    for route in load_function(function).app.routes
    if route.auth is Auth.ACCOUNT
]


@pytest.mark.parametrize(
    ("function", "method", "path"), ACCOUNT_ROUTES, ids=[f"{m} {p}" for _, m, p in ACCOUNT_ROUTES]
)
def test_every_account_route_takes_the_header_of_a_service_token(
    service, twilio, dynamodb, function, method, path
):
    """One mechanism in the router: a new account route gets it without a line of its own."""
    create("acct-2")
    before = table(dynamodb)
    concrete = re.sub(r"\{\w+\}", "x", path)
    request = event(
        "account_get_balance",
        method=method,
        path=concrete,
        claims=service_token(),
        headers={"idempotency-key": "k-1"},
        body={},
    )
    response = load_function(function).lambda_handler(request, Context())
    answer = json.loads(response["body"])
    assert (response["statusCode"], answer["error"]["code"]) == (400, "account_header_required"), answer
    assert table(dynamodb) == before


def test_the_log_names_the_account_a_service_token_acted_for_never_the_token(service, twilio, stdout):
    create("acct-2")
    stdout()
    assert as_service("account_get_balance")[0] == 200
    lines = stdout()
    acting = [line for line in lines if line.get("acting_for") == "acct-2"]
    assert acting and acting[0]["service_subject"] == "saas-backend"
    assert all("Bearer" not in json.dumps(line) and "eyJ" not in json.dumps(line) for line in lines)


def test_the_openapi_document_describes_the_header_on_account_routes_only(service):
    status, document = call("account_api", "account_get_balance", claims=None, path="/v1/openapi.json")
    assert status == 200
    balance_headers = [p["name"] for p in document["paths"]["/v1/balance"]["get"].get("parameters", [])]
    admin_headers = [p["name"] for p in document["paths"]["/v1/admin/accounts"]["get"].get("parameters", [])]
    assert "X-Account-Id" in balance_headers and "X-Account-Id" not in admin_headers
