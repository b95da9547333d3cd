"""Putting a card on file without buying: setup_url when auto-recharge is switched on with no card, POST
/v1/auto-recharge/card (Idempotency-Key) to add or replace one, and the setup session's completion."""

from __future__ import annotations

import json
from typing import Any

import pytest

from smscredits import runtime
from smscredits.domain.audit import check_account
from tests.functions import Context, call, event, load_function, user
from tests.integration.conftest import create
from tests.integration.stripe_support import (
    FakeStripeHttp,
    adjust,
    balance,
    deliver,
    get_auto_recharge,
    put_auto_recharge,
    stripe_api,
    stripe_event,
)

pytestmark = pytest.mark.memory_ledger

__all__ = ["stripe_api"]
AU = "+61491570110"
SETTINGS = {"enabled": True, "regions": {"AU": {"packs": 1, "threshold": 0}}, "monthly_cap_cents": 5000}


def card_route(key: str | None) -> tuple[int, Any]:
    request = event("checkout_post_auto_recharge_card", claims=user())
    if key is None:
        del request["headers"]["idempotency-key"]
    else:
        request["headers"]["idempotency-key"] = key
    response = load_function("checkout").lambda_handler(request, Context())
    return response["statusCode"], json.loads(response["body"])


def setup_session(stripe_api: FakeStripeHttp) -> dict[str, str]:
    [*_, created] = [r for r in stripe_api.of("/v1/checkout/sessions") if r["method"] == "post"]
    return created["params"]


def completed(session_id: str, customer: str, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": session_id,
        "mode": "setup",
        "payment_status": "no_payment_required",
        "payment_intent": None,
        "setup_intent": "seti_1",
        "customer": customer,
        "amount_total": None,
        "metadata": {"account_id": "acct-1", "kind": "card_setup"},
    }
    return stripe_event("stripe_checkout_session_completed", **{**fields, **changes})


def test_switching_on_with_no_card_answers_a_setup_url_and_completing_it_keeps_sends_going(
    service, stripe_api
):
    create()
    status, answer = put_auto_recharge(SETTINGS)
    assert status == 200, answer
    assert answer["card_on_file"] is False and answer["setup_url"].startswith("https://checkout.stripe.com/")
    params = setup_session(stripe_api)
    assert (params["mode"], params["metadata[kind]"], params["metadata[account_id]"]) == (
        "setup",
        "card_setup",
        "acct-1",
    )
    customer = params["customer"]
    session_id = answer["setup_url"].rsplit("/", 1)[1]

    assert deliver(completed(session_id, customer)) == (200, {"received": True, "outcome": "card_saved"})
    assert (
        deliver(completed(session_id, customer))[1]["outcome"] == "card_saved"
    )  # a repeat changes nothing more
    assert get_auto_recharge()["card_on_file"] is True

    adjust("included", -50, key="drain-included")
    status, sent = call(
        "send",
        "send_post_message",
        body={"to": AU, "body": "Hello"},
        headers={"idempotency-key": "k1"},
        claims=user(),
    )
    assert status == 202 and sent["status"] == "sent", sent
    [charge] = stripe_api.charges
    assert (charge["params"]["customer"], charge["params"]["payment_method"]) == (customer, "pm_card_setup")
    assert balance()["purchased"]["AU"] == 99
    assert check_account(*runtime.container().statements.partition("acct-1")) == []


def test_the_card_route_needs_an_idempotency_key_and_replays_one(service, stripe_api):
    create()
    status, answer = card_route(None)
    assert status in (400, 422) and answer["error"]["code"] == "idempotency_key_required", answer
    status, first = card_route("card-1")
    assert status == 201, first
    assert card_route("card-1") == (201, first)  # the same session, Stripe's idempotency key replayed
    status, other = card_route("card-2")
    assert status == 201 and other["session_id"] != first["session_id"]
    assert {r["idempotency_key"] for r in stripe_api.of("/v1/checkout/sessions")} == {
        "card-setup:acct-1:card-1",
        "card-setup:acct-1:card-2",
    }


def test_a_new_card_replaces_a_declined_one_and_switching_on_clears_the_decline(service, stripe_api):
    create()
    put_auto_recharge(SETTINGS)
    customer = setup_session(stripe_api)["customer"]
    deliver(completed("cs_first", customer))
    adjust("included", -50, key="drain-included")
    stripe_api.card = "decline"
    for n in range(3):
        call(
            "send",
            "send_post_message",
            body={"to": AU, "body": "Hello"},
            headers={"idempotency-key": f"d{n}"},
            claims=user(),
        )
    state = get_auto_recharge()
    assert (state["enabled"], state["disabled_reason"]) == (False, "card_declined") or state[
        "consecutive_failures"
    ] == 3, state

    status, setup = card_route("replace")
    assert status == 201
    stripe_api.card = "succeed"
    assert (
        deliver(completed(setup["session_id"], customer, setup_intent="seti_2"))[1]["outcome"] == "card_saved"
    )
    assert get_auto_recharge()["consecutive_failures"] == 0
    status, answer = put_auto_recharge(SETTINGS)
    assert (answer["enabled"], answer["disabled_reason"], answer["card_on_file"], answer["setup_url"]) == (
        True,
        None,
        True,
        None,
    )
    status, sent = call(
        "send",
        "send_post_message",
        body={"to": AU, "body": "Hello"},
        headers={"idempotency-key": "after"},
        claims=user(),
    )
    assert status == 202 and sent["status"] == "sent", sent


def test_a_setup_session_for_another_customer_saves_nothing(service, stripe_api):
    create()
    put_auto_recharge(SETTINGS)
    assert deliver(completed("cs_x", "cus_someone_else"))[1]["outcome"] == "unmatched"
    assert deliver(completed("cs_y", "cus_z", metadata={"kind": "other"}))[1]["outcome"] == "ignored"
    assert get_auto_recharge()["card_on_file"] is False
