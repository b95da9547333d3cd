"""The local Stripe stand-in behind the service's own StripePayments (the real SDK), in process."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import stripe
from werkzeug.test import Client

from local import stripe_standin, stripe_webhooks
from local.stripe_standin import StripeStandIn
from smscredits.adapters.stripe_payments import StripePayments, make_client
from smscredits.domain.errors import IdempotencyKeyReused
from smscredits.domain.orders import receipt_url_of

BASE = "http://127.0.0.1:3000/__local/stripe"
SECRET = "whsec_unit"


class WsgiHttp(stripe.HTTPClient):
    """The SDK's requests, answered by the stand-in's WSGI app without a socket."""

    name = "wsgi"

    def __init__(self, app: StripeStandIn) -> None:
        super().__init__()
        self.client = Client(app)

    def request(self, method: str, url: str, headers: Any, post_data: Any = None, **_: Any) -> Any:
        parts = urlsplit(url)
        answer = self.client.open(
            parts.path.removeprefix("/__local/stripe"),
            method=method.upper(),
            query_string=parts.query,
            headers=dict(headers or {}),
            data=post_data,
            content_type="application/x-www-form-urlencoded",
        )
        return answer.get_data(as_text=True), answer.status_code, dict(answer.headers)


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every webhook the stand-in posts, verified as our webhook route verifies it."""
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Answer:
        status_code = 200

    def post(url: str, data: bytes, headers: dict[str, str], timeout: float) -> Answer:
        event = stripe.Webhook.construct_event(data.decode(), headers["Stripe-Signature"], SECRET)
        with lock:
            received.append({"url": url, **event.to_dict()})
        return Answer()

    monkeypatch.setattr(stripe_webhooks.requests, "post", post)
    return received


@pytest.fixture
def stand_in(delivered: list[dict[str, Any]]) -> Iterator[StripeStandIn]:
    cards = stripe_standin.cards_from_environment(
        '{"acct-auth": "4000 0027 6000 3184", "acct-dispute": "4000 0000 0000 0259"}'
    )
    stand_in = StripeStandIn(
        base_url=BASE,
        webhook_url="http://127.0.0.1:3000/webhooks/stripe",
        webhook_secret=SECRET,
        cards=cards,
        webhook_delay=0,
    )
    yield stand_in
    # Its webhooks leave from threads: one still delivering after this test would land in the next test's list.
    deadline = time.monotonic() + 5
    while (
        any(e["delivery"] == "pending" for e in stand_in.webhooks.newest_first())
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)


@pytest.fixture
def payments(stand_in: StripeStandIn) -> StripePayments:
    client = make_client("sk_test_local", api_base=BASE, timeout=5, http_client=WsgiHttp(stand_in))
    return StripePayments(client, SECRET)


def checkout_params(account: str, customer: str, *, save: bool) -> dict[str, Any]:
    metadata = {"account_id": account, "region": "AU", "packs": "2", "kind": "checkout"}
    intent_data: dict[str, Any] = {"metadata": metadata}
    if save:
        intent_data["setup_future_usage"] = "off_session"
    return {
        "mode": "payment",
        "customer": customer,
        "client_reference_id": account,
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 620,
                    "product_data": {"name": "100 AU SMS credits"},
                },
                "quantity": 2,
            }
        ],
        "metadata": metadata,
        "payment_intent_data": intent_data,
        "success_url": "http://127.0.0.1:3000/dashboard?checkout=success",
        "cancel_url": "http://127.0.0.1:3000/dashboard?checkout=cancel",
    }


def wait_for(count: int, received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return received


def buy(stand_in: StripeStandIn, payments: StripePayments, account: str, *, save: bool) -> tuple[str, str]:
    """A checkout paid on the pay page with the card it preselects; returns (customer, session id)."""
    customer = payments.create_customer(account)
    session_id, url = payments.create_checkout_session(
        checkout_params(account, customer, save=save), f"checkout:{account}:k"
    )
    page = Client(stand_in).get(urlsplit(url).path.removeprefix("/__local/stripe"))
    card = re.search(r'<option value="(\d+)" selected>', page.get_data(as_text=True))
    assert card, page.get_data(as_text=True)
    paid = Client(stand_in).post(f"/checkout/{session_id}", data={"card": card.group(1)})
    assert paid.status_code == 303
    return customer, session_id


def test_the_same_idempotency_key_gives_the_same_object_and_other_parameters_are_refused(payments):
    first = payments.create_customer("acct-1")
    assert payments.create_customer("acct-1") == first and first.startswith("cus_")
    params = checkout_params("acct-1", first, save=False)
    session = payments.create_checkout_session(params, "checkout:acct-1:k1")
    assert payments.create_checkout_session(params, "checkout:acct-1:k1") == session
    assert session[0].startswith("cs_test_") and session[1] == f"{BASE}/checkout/{session[0]}"
    with pytest.raises(IdempotencyKeyReused):
        payments.create_checkout_session({**params, "client_reference_id": "other"}, "checkout:acct-1:k1")


def test_the_pay_page_has_one_form_and_paying_twice_pays_once(stand_in, payments, delivered):
    customer, session_id = buy(stand_in, payments, "acct-1", save=False)
    page = Client(stand_in).get(f"/checkout/{session_id}").get_data(as_text=True)
    again = Client(stand_in).post(f"/checkout/{session_id}", data={})

    assert "already paid" in page
    assert again.status_code == 303 and again.headers["Location"].endswith("checkout=success")
    completed, succeeded = wait_for(2, delivered)
    time.sleep(0.05)  # a second payment's events would have been sent by now
    assert [e["type"] for e in delivered] == ["checkout.session.completed", "payment_intent.succeeded"]
    session = completed["data"]["object"]
    paid = {"payment_status": "paid", "status": "complete", "amount_total": 1240, "currency": "usd"}
    assert {k: session[k] for k in paid} == paid
    assert [session["customer"], session["client_reference_id"], session["mode"]] == [
        customer,
        "acct-1",
        "payment",
    ]
    intent = succeeded["data"]["object"]
    assert intent["id"] == session["payment_intent"] and intent["latest_charge"].startswith("ch_")
    assert intent["metadata"]["kind"] == "checkout" and intent["amount_received"] == 1240
    assert completed["id"].startswith("evt_") and completed["livemode"] is False


def test_an_unsaved_card_cannot_be_charged_off_session(stand_in, payments):
    customer, session_id = buy(stand_in, payments, "acct-1", save=False)
    method = payments.payment_method_of(stand_in.sessions[session_id]["payment_intent"])
    assert method and method.startswith("pm_")
    outcome = charge(payments, customer, method)  # Stripe refuses it: nothing charged, a decline for us
    assert outcome.result == "declined"
    assert [i["status"] for i in stand_in.intents.values()] == ["succeeded"]  # the checkout's only


def charge(payments: StripePayments, customer: str, method: str, key: str = "rch_1") -> Any:
    metadata = {"account_id": "acct-1", "region": "AU", "packs": "1", "kind": "recharge", "recharge_id": key}
    return payments.charge_off_session(
        amount_cents=620, customer=customer, payment_method=method, metadata=metadata, idempotency_key=key
    )


@pytest.mark.parametrize(
    ("account", "result", "event"),
    [
        ("acct-1", "succeeded", "payment_intent.succeeded"),
        ("demo-essentials", "declined", "payment_intent.payment_failed"),
        ("acct-auth", "authentication_required", "payment_intent.payment_failed"),
    ],
)
def test_off_session_charges_follow_the_saved_test_card(
    stand_in, payments, delivered, account, result, event
):
    customer, session_id = buy(stand_in, payments, account, save=True)
    method = payments.payment_method_of(stand_in.sessions[session_id]["payment_intent"])
    assert method and stand_in.payment_methods[method]["customer"] == customer

    outcome = charge(payments, customer, method)
    replay = charge(payments, customer, method)

    assert outcome.result == replay.result == result
    assert outcome.payment_intent["id"] == replay.payment_intent["id"]
    wait_for(3, delivered)
    time.sleep(0.05)
    recharges = [e for e in delivered if e["data"]["object"]["metadata"]["kind"] == "recharge"]
    assert [e["type"] for e in recharges] == [event]  # the replay sent nothing
    assert recharges[0]["data"]["object"]["id"] == outcome.payment_intent["id"]


def test_a_recharge_is_found_by_its_id_or_by_its_recharge_id_and_checkouts_turn_adaptive_pricing_off(
    stand_in, payments
):
    customer, session_id = buy(stand_in, payments, "acct-1", save=True)
    method = payments.payment_method_of(stand_in.sessions[session_id]["payment_intent"])
    assert method
    outcome = charge(payments, customer, method)
    assert outcome.payment_intent is not None
    intent_id = outcome.payment_intent["id"]
    recharge_id = outcome.payment_intent["metadata"]["recharge_id"]
    by_id, by_search = (
        payments.find_recharge_intent(recharge_id, intent_id),
        payments.find_recharge_intent(recharge_id, None),
    )
    assert by_id is not None and by_search is not None
    assert (by_id["id"], by_search["id"], by_search["status"]) == (intent_id, intent_id, "succeeded")
    assert payments.find_recharge_intent("rch_other_AU_1", None) is None
    params = {**checkout_params("acct-1", customer, save=False), "adaptive_pricing": {"enabled": False}}
    created, _ = payments.create_checkout_session(params, "checkout:acct-1:ap")
    assert stand_in.sessions[created]["adaptive_pricing"] == {"enabled": False}


def test_a_paid_charge_has_a_receipt_page_and_every_answer_that_expands_it_names_it(stand_in, payments):
    customer, session_id = buy(stand_in, payments, "acct-1", save=True)
    intent_id = stand_in.sessions[session_id]["payment_intent"]
    receipt = receipt_url_of(payments.paid_intent(intent_id))
    charge_id = stand_in.intents[intent_id]["latest_charge"]
    assert receipt == f"{BASE}/receipts/{charge_id}"
    page = Client(stand_in).get(f"/receipts/{charge_id}")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    text = page.get_data(as_text=True)
    assert "$12.40 USD" in text and "Visa ending in 4242" in text and "100 AU SMS credits" in text

    method = payments.payment_method_of(intent_id)
    assert method
    outcome = charge(payments, customer, method)
    assert outcome.result == "succeeded" and outcome.payment_intent is not None
    recharged = outcome.payment_intent["latest_charge"]  # expanded in the charge's own answer
    assert recharged["receipt_url"] == f"{BASE}/receipts/{recharged['id']}"
    recharge_id = outcome.payment_intent["metadata"]["recharge_id"]
    for found in (
        payments.find_recharge_intent(recharge_id, outcome.payment_intent["id"]),
        payments.find_recharge_intent(recharge_id, None),
    ):
        assert found is not None and found["latest_charge"]["receipt_url"] == recharged["receipt_url"]
    assert isinstance(stand_in.intents[outcome.payment_intent["id"]]["latest_charge"], str)  # kept as an id
    assert Client(stand_in).get("/receipts/ch_unknown").status_code == 404


def test_a_declined_charge_has_no_receipt(stand_in, payments):
    customer, session_id = buy(stand_in, payments, "demo-essentials", save=True)
    method = payments.payment_method_of(stand_in.sessions[session_id]["payment_intent"])
    assert method and charge(payments, customer, method).result == "declined"
    [failed] = [i for i in stand_in.intents.values() if i["status"] != "succeeded"]
    assert receipt_url_of(payments.paid_intent(failed["id"])) is None
    assert Client(stand_in).get(f"/receipts/{failed['latest_charge']}").status_code == 404


def test_the_disputing_test_card_pays_then_sends_the_dispute(stand_in, payments, delivered):
    _, session_id = buy(stand_in, payments, "acct-dispute", save=False)
    wait_for(4, delivered)
    assert [e["type"] for e in delivered] == [
        "checkout.session.completed",
        "payment_intent.succeeded",
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
    ]
    intent = stand_in.intents[stand_in.sessions[session_id]["payment_intent"]]
    dispute = delivered[2]["data"]["object"]
    assert (dispute["payment_intent"], dispute["charge"], dispute["amount"]) == (
        intent["id"],
        intent["latest_charge"],
        1240,
    )
    assert dispute["reason"] == "fraudulent" and dispute["status"] == "needs_response"
    assert sum(t["amount"] for t in dispute["balance_transactions"]) == -1240
    assert delivered[3]["data"]["object"]["id"] == dispute["id"]
