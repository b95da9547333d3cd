"""Drivers for the reliability tests: sends, signed callbacks and webhooks, sweeps and refreshes, in-process."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from twilio.request_validator import RequestValidator

from tests import outbox
from tests.conftest import Clock
from tests.functions import Context, admin, call, event, load_function, user
from tests.integration.conftest import TWILIO_TOKEN, FakeTwilioHttp
from tests.integration.stripe_support import (
    FakeStripeHttp,
    deliver,
    put_auto_recharge,
    recharge_event,
    session_of,
)

AU = "+61491570110"
GRACE_HOURS = 2  # past the sweeper's grace period (SWEEP_GRACE_SECONDS defaults to one hour)


def send(key: str, account: str = "acct-1", to: str = AU, body: str = "Hello") -> tuple[int, Any]:
    return call(
        "send",
        "send_post_message",
        body={"to": to, "body": body},
        headers={"idempotency-key": key},
        claims=user(account),
    )


def twilio_callback(twilio: FakeTwilioHttp, index: int, status: str = "delivered") -> tuple[int, Any]:
    """Twilio's signed status callback for the `index`-th message it received."""
    url = twilio.callback_url(index)
    params = {"MessageSid": twilio.sid(index), "MessageStatus": status, "AccountSid": "AC" + "1" * 32}
    if status == "failed":
        params["ErrorCode"] = "30006"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    return call(
        "twilio_status",
        "twilio_status_delivered",
        body=urlencode(params),
        headers={"x-twilio-signature": signature},
        query=dict(parse_qsl(urlsplit(url).query)),
    )


def deliver_all_callbacks(twilio: FakeTwilioHttp, status: str = "delivered") -> None:
    for index in range(len(twilio.sent)):
        code, answer = twilio_callback(twilio, index, status)
        assert code == 200, answer


def sweep(clock: Clock) -> dict[str, int]:
    """The sweeper, run once the grace period of every open hold has passed."""
    clock.advance(hours=GRACE_HOURS)
    result: dict[str, int] = load_function("sweeper").lambda_handler(event("scheduler_sweep"), Context())
    return result


def refresh() -> dict[str, int]:
    result: dict[str, int] = load_function("refresh").lambda_handler(event("scheduler_sweep"), Context())
    return result


def create(account_id: str = "acct-1", **fields: Any) -> tuple[int, Any]:
    body = {
        "account_id": account_id,
        "plan": "starter",
        "billing_anchor": "2026-01-05",
        "home_region": "AU",
        **fields,
    }
    return call("account_api", "admin_post_account", body=body, claims=admin())


def adjust(account_id: str, pool: str, credits: int, key: str) -> tuple[int, Any]:
    return call(
        "account_api",
        "admin_post_account",
        body={"pool": pool, "credits": credits, "reason": "reliability test"},
        claims=admin(),
        path=f"/v1/admin/accounts/{account_id}/adjustments",
        path_params={"account_id": account_id},
        headers={"idempotency-key": key},
    )


def migrate(account_id: str) -> tuple[int, Any]:
    return call(
        "account_api",
        "admin_post_account",
        body={"dry_run": False},
        claims=admin(),
        path=f"/v1/admin/accounts/{account_id}/migration",
        path_params={"account_id": account_id},
        headers={"idempotency-key": f"migrate-{account_id}"},  # support's retry sends the same key
    )


def checkout(key: str, account: str = "acct-1", quantity: int = 2) -> tuple[int, Any]:
    return call(
        "checkout",
        "checkout_post_session",
        body={"region": "AU", "quantity": quantity},
        headers={"idempotency-key": key},
        claims=user(account),
    )


def paid_session(stripe_api: FakeStripeHttp, intent: str = "pi_rel_1", index: int = -1) -> dict[str, Any]:
    """checkout.session.completed for the index-th session the fake Stripe created, paid by `intent`."""
    return session_of(stripe_api, index, payment_intent=intent).session_event()


def card_on_file(stripe_api: FakeStripeHttp) -> None:
    """Auto-recharge on (one AU pack at zero, $50 a month), then a paid checkout that saves the card."""
    rules = {"enabled": True, "regions": {"AU": {"packs": 1, "threshold": 0}}, "monthly_cap_cents": 5000}
    assert put_auto_recharge(rules)[0] == 200
    assert checkout("card")[0] == 201
    assert webhook(paid_session(stripe_api, "pi_card"))[1]["outcome"] == "granted"


def recharge_webhooks(stripe_api: FakeStripeHttp, name: str = "stripe_payment_intent_succeeded") -> None:
    """Stripe's webhook for every PaymentIntent it created (whatever its answer to the charge was)."""
    for index in range(len(stripe_api.intents)):
        status, answer = webhook(recharge_event(stripe_api, index, name))
        assert status == 200, answer


def webhook(body: dict[str, Any]) -> tuple[int, Any]:
    return deliver(json.loads(json.dumps(body)))


def published(kind: str) -> list[dict[str, Any]]:
    """The events of `kind` the movements wrote (the outbox the publisher reads)."""
    return outbox.published(kind)
