"""Twilio and Stripe faults: no double send, credits back where nothing went out, one grant, one clawback."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from twilio.http.response import Response

from tests.conftest import Clock
from tests.integration.conftest import FakeTwilioHttp
from tests.integration.stripe_support import Checkout, FakeStripeHttp, checkout, recharge_event, stripe_event
from tests.reliability import support as S
from tests.reliability.conftest import FIGURES, audit

# Use cases: they run on the in-memory ledger (tests/contract holds it to DynamoDB's rules).
pytestmark = pytest.mark.memory_ledger

# mode: (what Twilio did, final included credits of 50 after 3 messages, each retried twice by the client)
TWILIO_MODES = {
    "accept": ("sent", 47),
    "reject": ("refused", 50),
    "error500": ("busy", 50),  # Twilio did not take it now: 429 busy, the key is used again by each retry
    "error429": ("busy", 50),
    "timeout": ("unknown", 47),
    "connect_timeout": ("refused", 50),
}


class TwilioWith429(FakeTwilioHttp):
    def request(self, method: str, uri: str, *args: Any, **kwargs: Any) -> Response:
        if self.mode != "error429":
            return super().request(method, uri, *args, **kwargs)
        self.requests.append({"method": method, "uri": uri, "data": dict(kwargs.get("data") or {})})
        return Response(429, json.dumps({"code": 20429, "message": "Too Many Requests", "status": 429}))


@pytest.mark.parametrize("mode", list(TWILIO_MODES))
@pytest.mark.parametrize("callback", ["comes", "never"])
def test_twilio_faults_never_double_send_and_return_what_did_not_go(
    mode: str, callback: str, service: Clock, twilio: FakeTwilioHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = TwilioWith429()
    fake.mode = mode
    twilio.on_request = None
    monkeypatch.setattr(twilio, "request", fake.request)
    monkeypatch.setattr(twilio, "requests", fake.requests)
    assert S.create()[0] == 201
    kind, included = TWILIO_MODES[mode]
    for n in range(3):
        for _ in range(3):  # the client retries every request: never a second Twilio request once one went
            status, answer = S.send(f"k{n}")
            if kind == "busy":
                assert (status, answer["error"]["code"]) == (429, "busy"), answer
            else:
                assert status == 202, answer
    asked = 9 if kind == "busy" else 3  # a busy Twilio took nothing: each retry asks again
    assert len(fake.requests) == asked
    if callback == "comes" and kind not in ("refused", "busy"):
        S.deliver_all_callbacks(twilio)
    swept = S.sweep(service)
    state = audit(["acct-1"])["acct-1"]
    if callback == "never" and kind == "unknown":
        # Conservative: nobody knows whether it went out; the sweeper returns the credits (a refund, never
        # a double send).
        included = 50
        assert swept["voided"] == 3
    if kind == "sent" and callback == "never":
        assert swept["voided"] == 0  # Twilio answered 201: charged at once, no callback needed
    assert state == {"pools": {**state["pools"], "included": included}, "held": 0}
    assert len(fake.requests) == asked
    figures = FIGURES["2 twilio faults"]
    figures["cases"] += 1
    figures["requests"] += 9
    figures["faults injected"] += 0 if mode == "accept" else asked
    figures["credits checked"] += 50


def test_failed_callback_after_a_post_refunds_once(service: Clock, twilio: FakeTwilioHttp) -> None:
    assert S.create()[0] == 201
    assert S.send("k1")[0] == 202
    for _ in range(3):  # Twilio delivers the failed status three times
        assert S.twilio_callback(twilio, 0, "failed")[0] == 200
    assert S.twilio_callback(twilio, 0, "delivered")[0] == 200  # a late, out-of-order delivered: nothing
    assert audit(["acct-1"])["acct-1"]["pools"]["included"] == 50
    FIGURES["2 twilio faults"]["cases"] += 1


# ---- Stripe ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_with", [500, 0], ids=["api_error", "timeout"])
def test_checkout_api_errors_write_nothing_and_a_retry_buys_once(
    fail_with: int, service: Clock, twilio: FakeTwilioHttp, stripe_api: FakeStripeHttp
) -> None:
    assert S.create()[0] == 201
    stripe_api.fail_with = fail_with
    status, answer = S.checkout("c1")
    assert status in (502, 503) and set(answer["error"]) == {"code", "message", "details"}, answer
    assert audit(["acct-1"])["acct-1"]["pools"]["purchased:AU"] == 0
    stripe_api.fail_with = None
    status, first = S.checkout("c1")
    assert status == 201
    assert S.checkout("c1") == (201, first)
    assert S.webhook(S.paid_session(stripe_api))[1]["outcome"] == "granted"
    assert audit(["acct-1"])["acct-1"]["pools"]["purchased:AU"] == 200
    FIGURES["3 stripe faults"]["cases"] += 1
    FIGURES["3 stripe faults"]["faults injected"] += 1


def _ready_for_recharge(stripe_api: FakeStripeHttp) -> None:
    assert S.create()[0] == 201
    S.card_on_file(stripe_api)
    assert S.adjust("acct-1", "included", -50, "drain-included")[0] == 200
    assert S.adjust("acct-1", "purchased:AU", -200, "drain-au")[0] == 200


@pytest.mark.parametrize("settled_by", ["succeeded", "payment_failed"])
def test_off_session_charge_errors_are_settled_by_the_webhook_once(
    settled_by: str,
    service: Clock,
    twilio: FakeTwilioHttp,
    stripe_api: FakeStripeHttp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stripe answers 500 to the off-session charge (did it charge?): the send waits, fails cleanly; the
    PaymentIntent's webhook (delivered twice) then grants once, or records the failure once."""
    from smscredits.services import recharge

    monkeypatch.setattr(recharge, "WAIT_SECONDS", 0.001)
    _ready_for_recharge(stripe_api)
    stripe_api.card = "error500"
    status, answer = S.send("k1")
    assert status == 402, answer  # clean: no hold, nothing charged that we know of
    received = 620 if settled_by == "succeeded" else 0
    webhook = recharge_event(stripe_api, name=f"stripe_payment_intent_{settled_by}", amount_received=received)
    for _ in range(2):
        assert S.webhook(webhook)[0] == 200
    state = audit(["acct-1"])["acct-1"]
    assert state["pools"]["purchased:AU"] == (100 if settled_by == "succeeded" else 0)
    stripe_api.card = "succeed"
    status, answer = S.send("k2")
    assert status == 202 and answer["status"] == "sent", answer
    charges = {charge["idempotency_key"] for charge in stripe_api.charges}  # the SDK retries a 500 once
    assert len(charges) == (1 if settled_by == "succeeded" else 2)
    FIGURES["3 stripe faults"]["cases"] += 1
    FIGURES["3 stripe faults"]["faults injected"] += 1


PURCHASE_EVENTS = ("checkout.session.completed", "payment_intent.succeeded", "charge.refunded")


def _purchase_event(kind: str, amount_refunded: int, bought: Checkout) -> dict[str, Any]:
    if kind == "checkout.session.completed":
        return bought.session_event()
    if kind == "payment_intent.succeeded":
        return bought.intent_event()  # 2 AU packs, pi_test_123
    return stripe_event("stripe_charge_refunded", amount_refunded=amount_refunded)


ORDERS = list(itertools.permutations(PURCHASE_EVENTS))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(k.split(".")[-1] for k in o) for o in ORDERS])
@pytest.mark.parametrize("refunded", [1240, 620], ids=["full_refund", "half_refund"])
def test_webhooks_reordered_and_duplicated_grant_once_and_claw_back_once(
    order: tuple[str, ...], refunded: int, service: Clock, twilio: FakeTwilioHttp, stripe_api: FakeStripeHttp
) -> None:
    """Every order of one purchase's events, each delivered three times, as Stripe redelivers any non-2xx:
    200 credits granted once; the refund takes back its share once, whenever it arrives."""
    assert S.create()[0] == 201
    bought = checkout(stripe_api)
    pending = [kind for kind in order for _ in range(3)]
    deliveries = 0
    for _ in range(10):  # Stripe's retry rounds
        failed = []
        for kind in pending:
            deliveries += 1
            status, answer = S.webhook(_purchase_event(kind, refunded, bought))
            assert status < 500, answer
            if status >= 300:
                failed.append(kind)
        pending = failed
        if not pending:
            break
    assert not pending
    state = audit(["acct-1"])["acct-1"]
    assert state["pools"]["purchased:AU"] == 200 - 200 * refunded // 1240
    assert len(S.published("pack.purchased")) == 1
    figures = FIGURES["3 stripe faults"]
    figures["cases"] += 1
    figures["webhook deliveries"] += deliveries
    figures["credits checked"] += 200


def test_dispute_then_refund_after_credits_were_spent_takes_back_once_never_below_zero(
    service: Clock, twilio: FakeTwilioHttp, stripe_api: FakeStripeHttp
) -> None:
    assert S.create()[0] == 201
    assert S.webhook(checkout(stripe_api).session_event())[0] == 200
    assert S.adjust("acct-1", "included", -50, "drain")[0] == 200
    for n in range(15):  # spend 150 of the 200 purchased credits: 15 messages of 10 GSM-7 segments
        assert S.send(f"spend-{n}", body="x" * 1530)[0] == 202
    dispute = stripe_event("stripe_charge_dispute_created")
    refund = stripe_event("stripe_charge_refunded")
    for body in (dispute, dispute, refund, refund, dispute):
        assert S.webhook(body)[0] == 200
    state = audit(["acct-1"])["acct-1"]
    assert state["pools"]["purchased:AU"] == 0  # the 50 left were taken back; the 150 spent stay spent
    FIGURES["3 stripe faults"]["cases"] += 1
    FIGURES["3 stripe faults"]["credits checked"] += 200
