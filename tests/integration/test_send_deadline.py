"""The auto-recharge inside a send works to the function's remaining time: a charge that might not finish
before Lambda stops the function (leaving time to send the message) is not started, so a slow Stripe never
turns a sent message into an error."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.functions import Context, event, load_function, user
from tests.integration.conftest import FakeTwilioHttp
from tests.integration.stripe_support import FakeStripeHttp, adjust, balance, stripe_api
from tests.integration.test_stripe_recharge import ready

pytestmark = pytest.mark.memory_ledger

__all__ = ["stripe_api"]


class Remaining(Context):
    def __init__(self, milliseconds: int) -> None:
        self.milliseconds = milliseconds

    def get_remaining_time_in_millis(self) -> int:
        return self.milliseconds


def send(key: str, remaining_ms: int) -> tuple[int, Any]:
    response = load_function("send").lambda_handler(
        event(
            "send_post_message",
            body={"to": "+61491570110", "body": "Hello"},
            headers={"idempotency-key": key},
            claims=user(),
        ),
        Remaining(remaining_ms),
    )
    return response["statusCode"], json.loads(response["body"])


def test_a_threshold_recharge_that_would_outlast_the_function_is_not_started(
    service: Any, stripe_api: FakeStripeHttp, twilio: FakeTwilioHttp
) -> None:
    ready(stripe_api, threshold=10)
    adjust("purchased:AU", 11, key="to-eleven")
    twilio.on_request = lambda _: time.sleep(5)  # a slow Twilio: 13 s left before it, 8 s after it
    status, answer = send("k1", remaining_ms=13_000)  # then less than a Stripe timeout (8 s) and a second
    twilio.on_request = None
    assert status == 202 and answer["status"] == "sent", answer
    assert stripe_api.charges == [] and balance()["purchased"]["AU"] == 10
    assert send("k2", remaining_ms=20_000)[0] == 202 and len(stripe_api.charges) == 1  # the next one does


def test_a_short_send_does_not_recharge_when_the_charge_and_the_send_cannot_both_fit(
    service: Any, stripe_api: FakeStripeHttp
) -> None:
    ready(stripe_api)
    status, answer = send("k1", remaining_ms=12_000)  # one provider request fits, not two
    assert status == 402 and answer["error"]["code"] == "insufficient_credits"
    assert stripe_api.charges == [] and balance()["held"] == 0
