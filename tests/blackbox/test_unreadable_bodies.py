"""Issue 12 item 4 from outside: bodies that cannot be read, sent to every route local mode serves, with a valid
token (and, for Stripe, a valid signature). No 5xx, the error shape on every refusal, nothing written."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

import pytest
import requests

from local.template import routes
from local.token import mint
from tests.blackbox.conftest import Api, LocalMode, error_of

pytestmark = pytest.mark.blackbox

STRIPE_SECRET = "whsec_local"  # local mode's default STRIPE_WEBHOOK_SECRET
BODIES = {
    "not UTF-8": b"\xff\xfe",
    "CESU-8 surrogate": b'{"to": "+61491570110", "body": "\xed\xa0\x80"}',
    "truncated UTF-8": b'{"to": "\xc3',
    "10,000 brackets": b"[" * 10_000,
    "100 levels": b'{"to": ' + b"[" * 100 + b"]" * 100 + b', "body": "x"}',
    "null": b"null",
    "array": b"[]",
    "string": b'"text"',
}


def sign(payload: bytes) -> str:
    at = int(time.time())
    digest = hmac.new(STRIPE_SECRET.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def state(owner: Api) -> tuple[Any, Any]:
    ledger = owner.get("/v1/ledger")
    assert ledger.status_code == 200, ledger.text
    return owner.balance(), ledger.json()


def test_every_route_refuses_unreadable_bodies_without_a_5xx(local_mode: LocalMode, admin: Api) -> None:
    account_id = f"bb-{uuid.uuid4().hex[:12]}"
    created = admin.post(
        "/v1/admin/accounts",
        {"account_id": account_id, "plan": "starter", "home_region": "AU", "billing_anchor": "2026-01-05"},
    )
    assert created.status_code == 201, created.text
    owner = Api(local_mode.base_url, mint(account_id))
    before = state(owner)
    answered: dict[int, int] = {}

    for route in routes():
        path = route.path.replace("{account_id}", account_id).replace("{message_id}", "msg_unknown")
        token = admin.token if "/admin/" in path else owner.token
        for name, body in BODIES.items():
            headers = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
            if route.authorized:
                headers["Authorization"] = f"Bearer {token}"
            if path == "/webhooks/stripe":
                headers["Stripe-Signature"] = sign(body)
            answer = requests.request(
                route.method, local_mode.base_url + path, data=body, headers=headers, timeout=30
            )
            answered[answer.status_code] = answered.get(answer.status_code, 0) + 1

            assert answer.status_code < 500, (route, name, answer.status_code, answer.text[:300])
            if answer.status_code >= 400:
                error_of(answer)
            if route.method != "GET":
                assert answer.status_code >= 400, (route, name, answer.text[:300])

    assert state(owner) == before
    assert sum(answered.values()) == len(routes()) * len(BODIES)


@pytest.mark.parametrize("payload", [b"null", b"[]", b'"text"', b"{}", b"[" * 10_000], ids=repr)
def test_a_validly_signed_stripe_payload_that_is_no_event_is_400(
    local_mode: LocalMode, payload: bytes
) -> None:
    answer = requests.post(
        f"{local_mode.base_url}/webhooks/stripe",
        data=payload,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload)},
        timeout=30,
    )

    assert answer.status_code == 400 and error_of(answer)["code"] == "invalid_request", answer.text
