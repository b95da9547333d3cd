"""Buying packs and auto-recharge through local mode's Stripe stand-in: the pay page, webhooks, test cards."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from local.stripe_webhooks import signature_header
from tests.blackbox.conftest import AU_NUMBER, Api, LocalMode, error_of, wait_for

pytestmark = pytest.mark.blackbox

AUTO_RECHARGE_AU = {
    "enabled": True,
    "regions": {"AU": {"packs": 1, "threshold": 0}},
    "monthly_cap_cents": 5000,
}


def events(local_mode: LocalMode, account_id: str) -> list[dict[str, Any]]:
    """The webhook events the stand-in sent about this account, oldest first."""
    answer = requests.get(f"{local_mode.base_url}/__local/stripe/events", timeout=10)
    answer.raise_for_status()
    sent = [
        e for e in answer.json()["data"] if e["data"]["object"]["metadata"].get("account_id") == account_id
    ]
    return list(reversed(sent))


def checkout(owner: Api, quantity: int = 1) -> dict[str, Any]:
    answer = owner.post("/v1/packs/checkout", {"region": "AU", "quantity": quantity}, key=uuid.uuid4().hex)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def pay(checkout_url: str) -> requests.Response:
    """What a browser does with the pay page: submit its one form, with the fields as the page fills them."""
    page = requests.get(checkout_url, timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
    text = page.text
    assert text.count("<form") == 1 and '<button type="submit">Pay</button>' in text, text
    action = re.search(r'<form method="post" action="([^"]+)"', text)
    card = re.search(r'<option value="(\d+)" selected>', text)
    assert action and card, text
    assert "Total: $6.20" in text and "100 AU SMS credits" in text
    return requests.post(action.group(1), data={"card": card.group(1)}, allow_redirects=False, timeout=10)


def buy_one_au_pack(owner: Api) -> dict[str, Any]:
    """Checkout → pay page → Pay; waits until the webhook has granted the 100 credits."""
    before = owner.balance()["purchased"]["AU"]
    session = checkout(owner)
    paid = pay(session["checkout_url"])
    assert paid.status_code == 303 and paid.headers["Location"].endswith("/dashboard?checkout=success")
    assert wait_for(lambda: owner.balance()["purchased"]["AU"] == before + 100), owner.balance()
    return session


def drain(admin: Api, account_id: str, owner: Api) -> None:
    """Spend nothing, keep nothing: support adjusts the included and AU pools to zero."""
    balance = owner.balance()
    for pool, credits in (
        ("included", balance["included"]["available"]),
        ("purchased:AU", balance["purchased"]["AU"]),
    ):
        if credits:
            body = {"pool": pool, "credits": -credits, "reason": "blackbox: start from zero"}
            adjusted = admin.post(f"/v1/admin/accounts/{account_id}/adjustments", body, key=uuid.uuid4().hex)
            assert adjusted.status_code == 200, adjusted.text


def test_paying_on_the_checkout_page_grants_the_pack_once(
    as_account: Callable[[str], Api], local_mode: LocalMode
) -> None:
    starter = as_account("demo-starter")
    session = buy_one_au_pack(starter)
    granted = starter.balance()["purchased"]["AU"]

    entries = starter.get("/v1/ledger").json()["entries"]
    [purchase] = [e for e in entries if e["reference"].get("session_id") == session["session_id"]]
    assert (purchase["kind"], purchase["pool"], purchase["amount"]) == ("purchase", "purchased:AU", 100)
    assert purchase["reference"]["amount_cents"] == 620
    receipt = requests.get(purchase["receipt_url"], timeout=10)  # Stripe's receipt, the stand-in's page here
    assert receipt.status_code == 200 and "Amount paid" in receipt.text and "$6.20 USD" in receipt.text
    assert purchase["receipt_url"].startswith(f"{local_mode.base_url}/__local/stripe/receipts/ch_")

    again = requests.post(session["checkout_url"], data={}, allow_redirects=False, timeout=10)
    assert again.status_code == 303

    def delivered() -> list[dict[str, Any]]:
        sent = events(local_mode, "demo-starter")
        return sent if all(e["delivery"] == 200 for e in sent) else []

    sent = wait_for(delivered)
    [completed] = [e["data"]["object"] for e in sent if e["data"]["object"]["id"] == session["session_id"]]
    assert (completed["payment_status"], completed["status"], completed["amount_total"]) == (
        "paid",
        "complete",
        620,
    )
    about_intent = [e["type"] for e in sent if e["data"]["object"]["id"] == completed["payment_intent"]]
    assert about_intent == ["payment_intent.succeeded"]
    assert starter.balance()["purchased"]["AU"] == granted


def test_opting_in_saves_the_card_and_a_send_at_zero_recharges_then_sends(
    admin: Api, as_account: Callable[[str], Api], local_mode: LocalMode
) -> None:
    starter = as_account("demo-starter")
    opted = starter.call("PUT", "/v1/auto-recharge", json=AUTO_RECHARGE_AU)
    assert opted.status_code == 200 and opted.json()["card_on_file"] is False, opted.text
    buy_one_au_pack(starter)
    assert wait_for(lambda: starter.get("/v1/auto-recharge").json()["card_on_file"])
    drain(admin, "demo-starter", starter)

    sent = starter.send(AU_NUMBER, "Sent on a recharge")

    assert sent.status_code == 202 and sent.json()["status"] == "sent", sent.text
    balance = starter.balance()
    assert (balance["included"]["available"], balance["purchased"]["AU"]) == (0, 99)
    settings = starter.get("/v1/auto-recharge").json()
    assert settings["spent_this_period_cents"] == 620 and settings["consecutive_failures"] == 0
    recharged = wait_for(
        lambda: [
            e
            for e in events(local_mode, "demo-starter")
            if e["data"]["object"]["metadata"].get("kind") == "recharge" and e["delivery"] == 200
        ]
    )
    assert [e["type"] for e in recharged] == ["payment_intent.succeeded"]
    assert starter.balance()["purchased"]["AU"] == 99  # the webhook found the recharge already granted


def test_demo_essentials_card_declines_so_the_send_is_refused_and_the_failure_counted(
    admin: Api, as_account: Callable[[str], Api], local_mode: LocalMode
) -> None:
    essentials = as_account("demo-essentials")
    assert essentials.call("PUT", "/v1/auto-recharge", json=AUTO_RECHARGE_AU).status_code == 200
    buy_one_au_pack(essentials)  # the pay page preselects 4000 0000 0000 0341 for this account
    assert wait_for(lambda: essentials.get("/v1/auto-recharge").json()["card_on_file"])
    drain(admin, "demo-essentials", essentials)

    refused = essentials.send(AU_NUMBER, "No credits and a declining card")

    assert refused.status_code == 402 and error_of(refused)["code"] == "insufficient_credits"
    settings = essentials.get("/v1/auto-recharge").json()
    assert (settings["enabled"], settings["consecutive_failures"]) == (True, 1)
    assert settings["spent_this_period_cents"] == 0
    failed = wait_for(
        lambda: [
            e for e in events(local_mode, "demo-essentials") if e["type"] == "payment_intent.payment_failed"
        ]
    )
    assert failed and failed[0]["data"]["object"]["last_payment_error"]["code"] == "card_declined"


LOCAL_WEBHOOK_SECRET = "whsec_local"  # local mode's default STRIPE_WEBHOOK_SECRET


def signed_event(local_mode: LocalMode, kind: str, obj: dict[str, Any]) -> requests.Response:
    """An event in Stripe's envelope, signed with the webhook secret, posted from outside."""
    payload = json.dumps(
        {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind, "data": {"object": obj}}
    )
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": signature_header(payload, LOCAL_WEBHOOK_SECRET, int(time.time())),
    }
    return requests.post(
        f"{local_mode.base_url}/webhooks/stripe", data=payload.encode(), headers=headers, timeout=30
    )


def test_signed_events_that_match_no_order_grant_nothing(
    new_account: Callable[..., Api], local_mode: LocalMode
) -> None:
    owner, other = new_account(), new_account()
    owner_id, other_id = owner.balance()["account_id"], other.balance()["account_id"]
    session = checkout(owner)
    real = requests.get(
        f"{local_mode.base_url}/__local/stripe/v1/checkout/sessions/{session['session_id']}",
        headers={"Authorization": "Bearer sk_test_local"},
        timeout=10,
    ).json()
    paid = {**real, "payment_status": "paid", "status": "complete", "payment_intent": "pi_forged"}
    recharge = {
        "id": f"pi_{uuid.uuid4().hex[:24]}",
        "object": "payment_intent",
        "amount": 620,
        "amount_received": 620,
        "currency": "usd",
        "status": "succeeded",
        "metadata": {"account_id": owner_id, "region": "AU", "packs": "1", "kind": "recharge"},
    }

    forged = [
        ("checkout.session.completed", {**paid, "metadata": {**real["metadata"], "account_id": other_id}}),
        ("checkout.session.completed", {**paid, "id": f"cs_test_{uuid.uuid4().hex[:24]}"}),
        ("payment_intent.succeeded", recharge),
    ]
    answers = [signed_event(local_mode, kind, obj) for kind, obj in forged]

    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"received": True, "outcome": "unmatched"})
    ] * 3
    assert owner.balance()["purchased"]["AU"] == 0 and other.balance()["purchased"]["AU"] == 0
    paid_for_real = pay(session["checkout_url"])  # the owner's own payment still grants the owner
    assert paid_for_real.status_code == 303
    assert wait_for(lambda: owner.balance()["purchased"]["AU"] == 100), owner.balance()
    assert other.balance()["purchased"]["AU"] == 0
