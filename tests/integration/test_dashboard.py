"""GET /dashboard through the account API handler: public, HTML, and free of secrets and admin calls."""

from __future__ import annotations

import re

from smscredits.api import dashboard_routes
from tests.functions import Context, call, event, load_function


def get_dashboard() -> tuple[int, str, dict[str, str]]:
    response = load_function("account_api").lambda_handler(
        event("account_get_balance", claims=None, path="/dashboard"), Context()
    )
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return response["statusCode"], response["body"], headers


def test_dashboard_is_served_without_a_token_as_html():
    status, body, headers = get_dashboard()
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert body.startswith("<!doctype html>") and "<title>SMS credits" in body
    assert "frame-ancestors" not in headers["content-security-policy"]  # the SaaS may embed the page


def test_the_page_is_read_once_from_package_data():
    assert dashboard_routes.dashboard_html() is dashboard_routes.dashboard_html()


def test_the_page_holds_no_secret_and_loads_nothing_from_elsewhere():
    _, body, _ = get_dashboard()
    for secret in (
        "eyJ",
        "local-dev-secret",
        "whsec_",
        "sk_test",
        "sk_live",
        "local-twilio-token",
        "Bearer ey",
    ):
        assert secret not in body, secret
    assert not re.search(r"\bAC[0-9a-f]{32}\b", body)
    assert not re.search(r"(src|href)=[\"']https?://", body)
    assert not re.search(r"fetch\(\s*[\"'`]https?://", body)


def test_the_page_calls_only_the_account_owners_routes():
    body = dashboard_routes.dashboard_html()
    paths = set(re.findall(r"[\"'`](/(?:v1|__local)/[^\"'`$?]*)", body))
    assert "/v1/balance" in paths and "/v1/ledger" in paths
    assert not [p for p in paths if "admin" in p]
    # The one non-API call is the local mode's demo picker, which AWS never serves.
    assert {p for p in paths if not p.startswith("/v1/")} == {"/__local/demo-tokens"}


def test_unknown_pages_are_still_404():
    status, answer = call("account_api", "account_get_balance", claims=None, path="/dashboard/x")
    assert status == 404 and answer["error"]["code"] == "not_found"
