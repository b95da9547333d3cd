"""Stripe's receipt of each purchase: kept on the payment and its ledger entry when it is granted, shown on the
statement line (`receipt_url`), by every path a payment is granted; none (and no error) when Stripe cannot say."""

from __future__ import annotations

from typing import Any

import pytest

from smscredits import runtime
from smscredits.services import recharge
from tests.functions import call, user
from tests.integration.conftest import create
from tests.integration.stripe_support import (
    FakeStripeHttp,
    adjust,
    checkout,
    deliver,
    put_auto_recharge,
    receipt_of,
    recharge_event,
    stripe_api,
)

__all__ = ["stripe_api"]

BOTH_LEDGERS = pytest.mark.parametrize(
    "ledger_kind", ["dynamodb", pytest.param("memory", marks=pytest.mark.memory_ledger)]
)


def statement(account: str = "acct-1") -> list[dict[str, Any]]:
    status, answer = call("account_api", "account_get_ledger", claims=user(account))
    assert status == 200, answer
    return list(answer["entries"])


def purchases() -> list[dict[str, Any]]:
    return [entry for entry in statement() if entry["kind"] == "purchase"]


def kept_receipt(payment_intent: str) -> str | None:
    payment = runtime.container().ledger.get_payment(payment_intent)
    assert payment is not None
    return payment.receipt_url


def receipt_requests(stripe_api: FakeStripeHttp) -> list[dict[str, Any]]:
    return [
        r
        for r in stripe_api.requests
        if r["method"] == "get"
        and r["path"].startswith("/v1/payment_intents/")
        and r["params"].get("expand[0]") == "latest_charge"
    ]


@BOTH_LEDGERS
def test_a_paid_checkout_links_its_receipt_on_the_statement_line(service, stripe_api, ledger_kind):
    create()
    bought = checkout(stripe_api)
    assert deliver(bought.session_event())[1]["outcome"] == "granted"

    [purchase] = purchases()
    assert purchase["receipt_url"] == receipt_of("pi_test_123")
    assert kept_receipt("pi_test_123") == receipt_of("pi_test_123")
    assert [r["path"] for r in receipt_requests(stripe_api)] == ["/v1/payment_intents/pi_test_123"]
    others = [entry["receipt_url"] for entry in statement() if entry["kind"] != "purchase"]
    assert others and set(others) == {None}  # the allowance's grant has no receipt


@BOTH_LEDGERS
def test_a_checkout_granted_by_its_payment_intent_event_links_its_receipt(service, stripe_api, ledger_kind):
    create()
    bought = checkout(stripe_api)
    assert deliver(bought.intent_event())[1]["outcome"] == "granted"
    assert deliver(bought.session_event())[1]["outcome"] == "duplicate"
    assert deliver(bought.intent_event())[1]["outcome"] == "duplicate"
    assert len(receipt_requests(stripe_api)) == 1  # a duplicate asks Stripe nothing

    [purchase] = purchases()
    assert purchase["receipt_url"] == receipt_of("pi_test_123")
    assert kept_receipt("pi_test_123") == receipt_of("pi_test_123")


def ready_to_recharge(stripe_api: FakeStripeHttp) -> None:
    """Auto-recharge on for AU with a card saved by a checkout, and no credits left."""
    create()
    body = {"enabled": True, "regions": {"AU": {"packs": 1, "threshold": 0}}, "monthly_cap_cents": 5000}
    assert put_auto_recharge(body)[0] == 200
    deliver(checkout(stripe_api).session_event())
    adjust("included", -50, key="drain-included")
    adjust("purchased:AU", -200, key="drain-au")


def send() -> tuple[int, Any]:
    return call(
        "send",
        "send_post_message",
        body={"to": "+61491570110", "body": "Hello"},
        headers={"idempotency-key": "k1"},
        claims=user(),
    )


@BOTH_LEDGERS
def test_an_auto_recharge_links_the_receipt_stripe_answered_with(service, stripe_api, ledger_kind):
    ready_to_recharge(stripe_api)
    # The checkout that saved the card read its PaymentIntent once: the receipt and the card in one answer.
    reads = [r for r in stripe_api.requests if r["path"] == "/v1/payment_intents/pi_test_123"]
    assert len(reads) == 1 and reads[0]["params"]["expand[0]"] == "latest_charge"
    assert runtime.container().ledger.get_account("acct-1").auto_recharge.payment_method_id == "pm_card_saved"
    looked_up = len(receipt_requests(stripe_api))
    assert send()[0] == 202

    [charge] = stripe_api.charges
    assert charge["params"]["expand[0]"] == "latest_charge"  # the receipt comes with the charge's answer
    assert len(receipt_requests(stripe_api)) == looked_up  # so nothing more is asked of Stripe
    recharged = next(p for p in purchases() if p["reference"]["source"] == "recharge:charge")
    intent = stripe_api.intents[-1]
    assert recharged["receipt_url"] == receipt_of(intent) and kept_receipt(intent) == receipt_of(intent)
    assert deliver(recharge_event(stripe_api))[1]["outcome"] == "duplicate"  # Stripe's webhook, later
    assert len(receipt_requests(stripe_api)) == looked_up


@pytest.mark.memory_ledger
def test_an_auto_recharge_settled_by_its_webhook_links_its_receipt(service, stripe_api, monkeypatch):
    ready_to_recharge(stripe_api)
    monkeypatch.setattr(recharge, "WAIT_POLLS", 2)
    monkeypatch.setattr(recharge, "WAIT_SECONDS", 0.01)
    stripe_api.card = "error500"  # Stripe made the PaymentIntent, its answer was lost
    assert send()[0] == 402
    intent = stripe_api.intents[-1]
    assert deliver(recharge_event(stripe_api))[1]["outcome"] == "granted"

    recharged = next(p for p in purchases() if p["reference"]["source"] == "recharge:webhook")
    assert recharged["receipt_url"] == receipt_of(intent) and kept_receipt(intent) == receipt_of(intent)


@pytest.mark.memory_ledger
def test_a_receipt_stripe_cannot_give_does_not_hold_the_credits_back(service, stripe_api):
    create()
    bought = checkout(stripe_api)
    stripe_api.receipts_fail = True
    assert deliver(bought.session_event())[1]["outcome"] == "granted"

    [purchase] = purchases()
    assert purchase["amount"] == 200 and purchase["receipt_url"] is None
    assert "receipt_url" not in purchase["reference"]
    assert kept_receipt("pi_test_123") is None
