"""Bodies that cannot be read (issue 12, item 4): bad bytes, deep nesting and signed non-events answer 400 with
the error shape and write nothing, on every JSON route and on both webhooks."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import TABLE
from tests.functions import Context, admin, event, load_function, user
from tests.integration.conftest import FakeTwilioHttp, create
from tests.integration.stripe_support import FakeStripeHttp, sign, stripe_api, stripe_event

__all__ = ["stripe_api"]

NOT_UTF8 = b"\xff\xfe"
CESU_SURROGATE = b'{"to": "+61491570110", "body": "\xed\xa0\x80"}'  # U+D800 as CESU-8: never valid UTF-8
NESTED = "[" * 10_000
DEEP_BUT_PARSEABLE = '{"to": ' + "[" * 100 + "]" * 100 + ', "body": "x"}'

# Every JSON route with a token: (function, fixture, method, path, path parameters, caller).
JSON_ROUTES: list[tuple[str, str, str, str, dict[str, str] | None, dict[str, str]]] = [
    ("account_api", "account_post_quote", "POST", "/v1/messages/quote", None, user()),
    ("account_api", "account_post_quote", "POST", "/v1/migration-request", None, user()),
    ("send", "send_post_message", "POST", "/v1/messages", None, user()),
    ("checkout", "checkout_post_session", "POST", "/v1/packs/checkout", None, user()),
    ("checkout", "account_put_auto_recharge", "PUT", "/v1/auto-recharge", None, user()),
    ("account_api", "admin_post_account", "POST", "/v1/admin/accounts", None, admin()),
    (
        "account_api",
        "admin_post_account",
        "PUT",
        "/v1/admin/accounts/acct-1/plan",
        {"account_id": "acct-1"},
        admin(),
    ),
    (
        "account_api",
        "admin_post_account",
        "POST",
        "/v1/admin/accounts/acct-1/adjustments",
        {"account_id": "acct-1"},
        admin(),
    ),
    (
        "account_api",
        "admin_post_account",
        "POST",
        "/v1/admin/accounts/acct-1/migration",
        {"account_id": "acct-1"},
        admin(),
    ),
]


def scan(dynamodb: Any) -> list[dict[str, Any]]:
    return sorted(dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"], key=json.dumps)


def answer(function: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = load_function(function).lambda_handler(request, Context())
    body = json.loads(response["body"])
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return response["statusCode"], body["error"]


def raw(request: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The body as API Gateway passes bytes that are not text: base64, flagged."""
    request["body"] = base64.b64encode(body).decode()
    request["isBase64Encoded"] = True
    return request


def route_event(route: tuple[str, str, str, str, dict[str, str] | None, dict[str, str]]) -> dict[str, Any]:
    _, fixture, method, path, params, caller = route
    return event(
        fixture,
        method=method,
        path=path,
        path_params=params,
        claims=caller,
        headers={"idempotency-key": "k-1"},
    )


@pytest.mark.parametrize("body", [NOT_UTF8, CESU_SURROGATE], ids=["ff-fe", "cesu-surrogate"])
@pytest.mark.parametrize("route", JSON_ROUTES, ids=[f"{r[2]} {r[3]}" for r in JSON_ROUTES])
def test_bytes_that_are_not_utf8_are_400_on_every_json_route(
    service, twilio: FakeTwilioHttp, stripe_api: FakeStripeHttp, dynamodb, route, body
):
    create()
    before = scan(dynamodb)

    status, error = answer(route[0], raw(route_event(route), body))

    assert (status, error["code"]) == (400, "invalid_request"), error
    assert scan(dynamodb) == before and twilio.sent == [] and stripe_api.requests == []


@pytest.mark.parametrize("body", [NESTED, DEEP_BUT_PARSEABLE], ids=["10000-brackets", "100-levels"])
@pytest.mark.parametrize("route", JSON_ROUTES, ids=[f"{r[2]} {r[3]}" for r in JSON_ROUTES])
def test_deeply_nested_json_is_400_on_every_json_route(
    service, twilio: FakeTwilioHttp, stripe_api: FakeStripeHttp, dynamodb, route, body
):
    create()
    before = scan(dynamodb)
    request = route_event(route)
    request["body"] = body

    status, error = answer(route[0], request)

    assert (status, error["code"]) == (400, "invalid_request"), error
    assert scan(dynamodb) == before and twilio.sent == [] and stripe_api.requests == []


@pytest.mark.parametrize("body", [NOT_UTF8, CESU_SURROGATE], ids=["ff-fe", "cesu-surrogate"])
def test_bytes_that_are_not_utf8_on_the_stripe_webhook_are_400(service, stripe_api, dynamodb, body):
    create()
    before = scan(dynamodb)
    request = raw(event("stripe_webhook_post", headers={"stripe-signature": "t=1,v1=00"}), body)

    status, error = answer("stripe_webhook", request)

    assert (status, error["code"]) == (400, "invalid_request"), error
    assert scan(dynamodb) == before and stripe_api.requests == []


@pytest.mark.parametrize("body", [NOT_UTF8, CESU_SURROGATE], ids=["ff-fe", "cesu-surrogate"])
def test_bytes_that_are_not_utf8_on_the_twilio_callback_are_400(service, twilio, dynamodb, body):
    create()
    before = scan(dynamodb)
    request = raw(event("twilio_status_delivered"), body)

    status, error = answer("twilio_status", request)

    assert (status, error["code"]) == (400, "invalid_request"), error
    assert scan(dynamodb) == before


@pytest.mark.parametrize(
    "payload",
    [
        "null",
        "[]",
        '"checkout.session.completed"',
        "5",
        "{}",
        '{"type": "checkout.session.completed"}',
        '{"type": "checkout.session.completed", "data": {}}',
        '{"type": "checkout.session.completed", "data": {"object": []}}',
        '{"data": {"object": {}}}',
        NESTED,
        "{not json",
    ],
)
def test_a_validly_signed_payload_that_is_not_a_stripe_event_is_400(service, stripe_api, dynamodb, payload):
    create()
    before = scan(dynamodb)
    request = event("stripe_webhook_post", body=payload, headers={"stripe-signature": sign(payload)})

    status, error = answer("stripe_webhook", request)

    assert (status, error["code"]) == (400, "invalid_request"), error
    assert scan(dynamodb) == before and stripe_api.requests == []


@pytest.mark.parametrize(
    ("fixture", "changes"),
    [
        ("stripe_checkout_session_completed", {"metadata": ["account_id", "acct-1"]}),
        ("stripe_checkout_session_completed", {"amount_total": "1240"}),
        ("stripe_payment_intent_succeeded", {"customer": 7}),
        ("stripe_charge_refunded", {"refunds": {"data": [{"amount": 5}]}}),
    ],
)
def test_a_signed_event_whose_fields_are_not_typed_as_stripe_documents_is_400(
    service, stripe_api, dynamodb, fixture, changes
):
    create()
    before = scan(dynamodb)
    payload = json.dumps(stripe_event(fixture, **changes))
    request = event("stripe_webhook_post", body=payload, headers={"stripe-signature": sign(payload)})

    status, error = answer("stripe_webhook", request)

    assert (status, error["code"]) == (400, "invalid_request"), error
    assert scan(dynamodb) == before
