"""The HTTP layer on its own (api/http.py): matching, reading and validating requests, and the one error map."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from smscredits.api import http
from smscredits.api.http import Api, Auth, Request, Response, Router
from smscredits.domain.errors import InsufficientCredits
from smscredits.domain.idempotency import IdempotencyKey


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    to: StrictStr


class Params(BaseModel):
    thing_id: StrictStr = Field(pattern=r"^[a-z]+$")


class Query(BaseModel):
    limit: int = Field(10, ge=1, le=50)


class Answer(BaseModel):
    seen: dict[str, Any]


router = Router()
seen: dict[str, Any] = {}


@router.post(
    "/v1/things/{thing_id}",
    auth=Auth.ACCOUNT,
    params=Params,
    query=Query,
    body=Body,
    status=201,
    summary="all",
)
def post_thing(request: Request, params: Params, query: Query, body: Body) -> Answer:
    return Answer(
        seen={"account": request.account_id, "thing": params.thing_id, "limit": query.limit, "to": body.to}
    )


@router.get("/v1/things/special", auth=Auth.PUBLIC, summary="a literal segment")
def special(request: Request) -> Response:
    return Response(200, "special", content_type="text/plain", headers={"X-Kind": "literal"})


@router.post("/v1/keyed", auth=Auth.ADMIN, idempotency_key="required", summary="needs a key")
def keyed(request: Request, key: IdempotencyKey) -> Answer:
    return Answer(seen={"key": key, "actor": request.actor})


@router.post("/v1/maybe-keyed", auth=Auth.ADMIN, idempotency_key="optional", summary="may have a key")
def maybe_keyed(request: Request, key: IdempotencyKey | None) -> Answer:
    return Answer(seen={"key": key})


@router.get("/v1/broken", auth=Auth.PUBLIC, summary="a bug")
def broken(request: Request) -> Answer:
    return Answer.model_validate({"not": "the shape"})  # a ValidationError of ours: 500, not 422


@router.get("/v1/refused", auth=Auth.PUBLIC, summary="a refusal")
def refused(request: Request) -> Answer:
    raise InsufficientCredits("Not enough credits.", {"needed": 2})


api = Api(router)
USER = {"sub": "u-1", "account_id": "acct-1", "scope": ""}
ADMIN = {"sub": "support-1", "scope": "admin"}


def request(
    method: str,
    path: str,
    body: str | bytes | None = None,
    *,
    claims: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers or {},
        "requestContext": {"http": {"method": method, "path": path}, "requestId": "r-1"},
        "isBase64Encoded": False,
    }
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    if query is not None:
        event["queryStringParameters"] = query
    if isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    elif body is not None:
        event["body"] = body
    return event


def resolve(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = api.resolve(event)
    headers = response["headers"]
    body = response["body"]
    return response["statusCode"], headers, json.loads(body) if "json" in headers["Content-Type"] else body


def error(event: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    status, _, body = resolve(event)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return status, body["error"]["code"], body["error"]["details"]


def test_a_route_gets_its_validated_path_query_body_and_caller():
    status, _, body = resolve(
        request("POST", "/v1/things/abc", '{"to": "x"}', claims=USER, query={"limit": "7"})
    )
    assert status == 201
    assert body == {"seen": {"account": "acct-1", "thing": "abc", "limit": 7, "to": "x"}}


def test_a_literal_segment_outranks_a_parameter_and_a_response_keeps_its_headers():
    assert resolve(request("GET", "/v1/things/special")) == (
        200,
        {"Content-Type": "text/plain", "X-Kind": "literal"},
        "special",
    )


def test_path_parameters_are_percent_decoded_and_one_nonempty_segment():
    assert error(request("POST", "/v1/things/a%2Fb", '{"to": "x"}', claims=USER))[0] == 422
    assert error(request("POST", "/v1/things/", '{"to": "x"}', claims=USER))[:2] == (404, "not_found")
    assert error(request("POST", "/v1/things/a/b", '{"to": "x"}', claims=USER))[:2] == (404, "not_found")


def test_an_unknown_route_is_404_and_a_wrong_method_is_405_with_allow():
    assert error(request("GET", "/v1/nothing")) == (404, "not_found", {})
    status, headers, body = resolve(request("DELETE", "/v1/things/special"))
    assert (status, headers["Allow"], body["error"]["code"]) == (405, "GET, POST", "invalid_request")
    assert body["error"]["details"] == {"allowed": ["GET", "POST"]}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", ""])
def test_json_bodies_may_say_so_or_say_nothing(content_type):
    event = request(
        "POST", "/v1/things/abc", '{"to": "x"}', claims=USER, headers={"content-type": content_type}
    )
    assert resolve(event)[0] == 201


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_other_content_types_are_415(content_type):
    event = request("POST", "/v1/things/abc", "to=x", claims=USER, headers={"content-type": content_type})
    assert error(event) == (415, "invalid_request", {})


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",  # not UTF-8
        b'{"to": "\xed\xa0\x80"}',  # a surrogate encoded as CESU-8
        '{"to": "\ud800"}',  # the same surrogate arriving as text
        "[" * 10_000,  # Python's parser would raise RecursionError
        '{"to": ' + "[" * 40 + "]" * 40 + "}",  # parseable but deeper than any request of ours
    ],
    ids=["ff-fe", "cesu-bytes", "surrogate-text", "10000-brackets", "40-levels"],
)
def test_unreadable_bodies_are_400(body):
    status, code, _ = error(request("POST", "/v1/things/abc", body, claims=USER))
    assert (status, code) == (400, "invalid_request")


def test_base64_that_is_not_base64_is_400():
    event = request("POST", "/v1/things/abc", claims=USER)
    event["body"], event["isBase64Encoded"] = "not base64!", True
    assert error(event)[:2] == (400, "invalid_request")


def test_invalid_json_is_400_with_its_position():
    assert error(request("POST", "/v1/things/abc", "{nope", claims=USER)) == (
        400,
        "invalid_request",
        {"errors": [{"location": "body.1", "problem": "JSON decode error", "type": "json_invalid"}]},
    )


@pytest.mark.parametrize("body", [None, "", "  ", "null"])
def test_a_missing_body_is_422_as_a_missing_field(body):
    assert error(request("POST", "/v1/things/abc", body, claims=USER)) == (
        422,
        "invalid_request",
        {"errors": [{"location": "body", "problem": "Field required", "type": "missing"}]},
    )


def test_path_query_and_body_problems_are_reported_together():
    status, code, details = error(
        request("POST", "/v1/things/ABC", '{"to": 5, "x": 1}', claims=USER, query={"limit": "0"})
    )
    assert (status, code) == (422, "invalid_request")
    assert [(e["location"], e["type"]) for e in details["errors"]] == [
        ("path.thing_id", "string_pattern_mismatch"),
        ("query.limit", "greater_than_equal"),
        ("body.to", "string_type"),
        ("body.x", "extra_forbidden"),
    ]


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (None, (401, "unauthorized")),
        ({"sub": "x"}, (401, "unauthorized")),
        ({"account_id": 7}, (401, "unauthorized")),
    ],
)
def test_account_routes_need_an_account_claim(claims, expected):
    assert error(request("POST", "/v1/things/abc", '{"to": "x"}', claims=claims))[:2] == expected


def test_admin_routes_need_the_admin_scope_from_the_claim_or_the_authorizer():
    key = {"idempotency-key": "k"}
    assert error(request("POST", "/v1/keyed", claims=USER, headers=key))[:2] == (403, "forbidden")
    assert error(request("POST", "/v1/keyed", headers=key))[:2] == (401, "unauthorized")
    event = request("POST", "/v1/keyed", claims={"sub": "s-2"}, headers=key)
    event["requestContext"]["authorizer"]["jwt"]["scopes"] = ["admin"]
    assert resolve(event)[2] == {"seen": {"key": "k", "actor": "s-2"}}


@pytest.mark.parametrize("value", [None, "", "   ", "K" * 256, "a\nb", "a\x00b"])
def test_a_required_idempotency_key_must_be_1_to_255_printable_characters(value):
    headers = {} if value is None else {"idempotency-key": value}
    status, code, details = error(request("POST", "/v1/keyed", claims=ADMIN, headers=headers))
    assert (status, code, details) == (400, "idempotency_key_required", {"header": "Idempotency-Key"})


def test_the_route_receives_the_key_trimmed_and_an_optional_key_may_be_absent():
    assert resolve(request("POST", "/v1/keyed", claims=ADMIN, headers={"idempotency-key": " k-1 "}))[2] == {
        "seen": {"key": "k-1", "actor": "support-1"}
    }
    assert resolve(request("POST", "/v1/maybe-keyed", claims=ADMIN))[2] == {"seen": {"key": None}}
    headers = {"idempotency-key": "K" * 256}
    assert error(request("POST", "/v1/maybe-keyed", claims=ADMIN, headers=headers))[:2] == (
        400,
        "idempotency_key_required",
    )


def test_a_domain_refusal_answers_its_own_status_and_code():
    assert error(request("GET", "/v1/refused")) == (402, "insufficient_credits", {"needed": 2})


def test_a_bug_of_ours_is_500_logged_and_counted_even_a_validation_error(monkeypatch):
    counted: list[str] = []
    monkeypatch.setattr(http, "count", counted.append)
    assert error(request("GET", "/v1/broken")) == (500, "internal_error", {})
    assert counted == ["UnhandledError"]


def test_idempotency_key_parse():
    assert IdempotencyKey.parse(None) is None and IdempotencyKey.parse("  ") is None
    assert IdempotencyKey.parse(" é-1 ") == "é-1" and isinstance(IdempotencyKey.parse("x"), str)
    assert IdempotencyKey.parse("K" * 255) == "K" * 255
