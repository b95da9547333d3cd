"""The local gateway: template routes only, the JWT authorizer, account isolation, the error shape."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest
import requests

from local.template import routes
from local.token import mint
from tests.blackbox.conftest import AU_NUMBER, Api, LocalMode, error_of

pytestmark = pytest.mark.blackbox


def _unsigned(account_id: str) -> str:
    claims = jwt.decode(mint(account_id), options={"verify_signature": False})
    return jwt.encode(claims, key="", algorithm="none")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        f"Bearer {mint('demo-starter', exp=int(time.time()) - 5)}",
        f"Bearer {mint('demo-starter', secret='another-secret-another-secret-00')}",
        f"Bearer {mint('demo-starter', aud='someone-else')}",
        f"Bearer {mint('demo-starter', iss='https://evil.example.com/')}",
        f"Bearer {mint('demo-starter', sub=None)}",
        f"Bearer {mint('demo-starter', exp=None)}",
        f"Bearer {_unsigned('demo-starter')}",
    ],
    ids=[
        "none",
        "empty",
        "garbage",
        "basic",
        "expired",
        "bad-key",
        "audience",
        "issuer",
        "no-sub",
        "no-exp",
        "alg-none",
    ],
)
def test_a_missing_or_invalid_token_is_401(local_mode: LocalMode, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}

    answer = requests.get(f"{local_mode.base_url}/v1/balance", headers=headers, timeout=10)

    assert answer.status_code == 401
    assert error_of(answer)["code"] == "unauthorized"


def test_support_routes_need_the_admin_scope(as_account: Callable[[str], Api]) -> None:
    body = {"account_id": "bb-sneaky", "plan": "growth", "home_region": "AU", "billing_anchor": "2026-01-05"}

    answer = as_account("demo-essentials").post("/v1/admin/accounts", body)

    assert answer.status_code == 403 and error_of(answer)["code"] == "forbidden"


def test_an_account_cannot_read_another_accounts_message(
    new_account: Callable[..., Api], as_account: Callable[[str], Api]
) -> None:
    owner = new_account()
    sent = owner.send(AU_NUMBER, "Private to its owner")
    assert sent.status_code == 202
    path = f"/v1/messages/{sent.json()['message_id']}"

    assert owner.get(path).status_code == 200
    stranger = as_account("demo-essentials").get(path)
    assert stranger.status_code == 404 and error_of(stranger)["code"] == "not_found"


def test_openapi_describes_every_http_route_of_the_template(local_mode: LocalMode) -> None:
    document = requests.get(f"{local_mode.base_url}/v1/openapi.json", timeout=10).json()
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    # The API's routes; the document and the docs page are not part of what they describe, and the
    # dashboard is a page, not an API route.
    declared = {
        (r.method, r.path)
        for r in routes()
        if r.path.startswith(("/v1/", "/webhooks/"))
        and r.path not in ("/v1/openapi.json", "/v1/docs", "/v1/docs/{asset}")
    }

    assert declared - documented == set()


def test_docs_page_needs_no_token(local_mode: LocalMode) -> None:
    answer = requests.get(f"{local_mode.base_url}/v1/docs", timeout=10)

    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")


def test_unknown_route_wrong_method_and_oversized_body_get_the_error_shape(local_mode: LocalMode) -> None:
    base = local_mode.base_url
    unknown = requests.get(f"{base}/v1/nothing-here", timeout=10)
    wrong_method = requests.delete(f"{base}/v1/balance", timeout=10)
    too_large = requests.post(
        f"{base}/v1/messages/quote",
        data=b"x" * (6 * 1024 * 1024 + 1),
        headers={"Authorization": f"Bearer {mint('demo-starter')}", "Content-Type": "application/json"},
        timeout=10,
    )

    assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"
    assert wrong_method.status_code == 405 and error_of(wrong_method)["code"] == "invalid_request"
    assert wrong_method.headers["allow"] == "GET"
    assert too_large.status_code == 413 and error_of(too_large)["code"] == "invalid_request"


def test_a_path_parameter_is_one_segment(as_account: Callable[[str], Api]) -> None:
    answer = as_account("demo-starter").get("/v1/messages/msg_x/extra")

    assert answer.status_code == 404 and error_of(answer)["code"] == "not_found"
