"""Packs and Checkout through the handlers: the price table, the session Stripe receives, refusals."""

from __future__ import annotations

from typing import Any

from smscredits.adapters.dynamo.values import from_item
from tests.conftest import TABLE
from tests.functions import call, load_function, user
from tests.integration.conftest import create
from tests.integration.stripe_support import FakeStripeHttp, put_auto_recharge, stripe_api

__all__ = ["stripe_api"]


def checkout(
    body: dict[str, Any] | None = None, key: str | None = "buy-1", account: str = "acct-1"
) -> tuple[int, Any]:
    headers = {"idempotency-key": key or ""}
    return call(
        "checkout",
        "checkout_post_session",
        body=body or {"region": "AU", "quantity": 2},
        headers=headers,
        claims=user(account),
    )


def test_price_table(service, stripe_api):
    status, answer = call("account_api", "account_get_packs", claims=user())
    assert status == 200 and answer["credits_per_pack"] == 100 and answer["currency"] == "usd"
    prices = {p["region"]: p["price_cents"] for p in answer["packs"]}
    assert prices == {"AU": 620, "US": 100, "GB": 630, "NZ": 1260}


def test_checkout_creates_a_session_with_the_callers_key_and_metadata(service, stripe_api: FakeStripeHttp):
    create()
    status, answer = checkout()
    assert status == 201
    assert answer["session_id"].startswith("cs_test_") and answer["checkout_url"].startswith(
        "https://checkout.stripe.com/"
    )
    [session] = stripe_api.of("/v1/checkout/sessions")
    params = session["params"]
    assert session["idempotency_key"] == "checkout:acct-1:buy-1"
    assert params["mode"] == "payment" and params["client_reference_id"] == "acct-1"
    assert params["line_items[0][price_data][unit_amount]"] == "620"
    assert params["line_items[0][price_data][currency]"] == "usd"
    assert params["line_items[0][price_data][product_data][name]"] == "100 AU SMS credits"
    assert params["line_items[0][quantity]"] == "2"
    assert (params["metadata[account_id]"], params["metadata[region]"], params["metadata[packs]"]) == (
        "acct-1",
        "AU",
        "2",
    )
    assert params["payment_intent_data[metadata][account_id]"] == "acct-1"
    assert "payment_intent_data[setup_future_usage]" not in params
    assert params["success_url"] == "https://api.example.com/dashboard?checkout=success"
    assert params["customer"].startswith("cus_test_")
    assert checkout() == (status, answer)  # the same key replays the same session
    checkout(key="buy-2")
    assert len(stripe_api.of("/v1/customers")) == 1  # the customer is stored and reused


def test_owner_opted_in_to_auto_recharge_saves_the_card(service, stripe_api):
    create()
    assert (
        put_auto_recharge({"enabled": True, "regions": {"UK": {"packs": 2}}, "monthly_cap_cents": 5000})[0]
        == 200
    )
    assert checkout({"region": "UK", "quantity": 1})[0] == 201
    setup, bought = stripe_api.of(
        "/v1/checkout/sessions"
    )  # switching it on with no card asked for a setup session
    assert setup["params"]["mode"] == "setup"
    params = bought["params"]
    assert params["payment_intent_data[setup_future_usage]"] == "off_session"
    assert params["metadata[region]"] == "GB" and params["metadata[save_card]"] == "true"


def test_legacy_account_gets_409_with_how_to_migrate(service, stripe_api):
    create(created_at="2025-01-01T00:00:00Z")
    status, answer = checkout()
    assert status == 409 and answer["error"]["code"] == "legacy_account"
    assert "migration" in answer["error"]["details"]["migrate"] and stripe_api.requests == []


def test_bad_requests_are_refused_before_stripe(service, stripe_api):
    create()
    assert checkout(key=None)[1]["error"]["code"] == "idempotency_key_required"
    for body in (
        {"region": "FR", "quantity": 1},
        {"region": "AU", "quantity": 0},
        {"region": "AU", "quantity": 101},
        {"region": "AU", "quantity": "2"},
    ):
        status, answer = checkout(body)
        assert status == 422 and answer["error"]["code"] == "invalid_request", body
    assert stripe_api.requests == []


def test_stripe_failure_is_upstream_unavailable_and_writes_nothing(service, stripe_api, dynamodb):
    create()
    before = dynamodb.scan(TableName=TABLE)["Items"]
    stripe_api.fail_with = 500
    status, answer = checkout()
    assert status == 502 and answer["error"]["code"] == "upstream_unavailable"
    stripe_api.fail_with = 0
    status, answer = checkout(key="buy-2")
    assert status == 503 and answer["error"]["code"] == "upstream_unavailable"
    assert dynamodb.scan(TableName=TABLE)["Items"] == before


def test_openapi_lists_the_billing_routes(service, stripe_api):
    paths = call("account_api", "account_get_balance", path="/v1/openapi.json")[1]["paths"]
    for path in ("/v1/packs", "/v1/packs/checkout", "/v1/auto-recharge", "/webhooks/stripe"):
        assert path in paths, path
    assert {"get", "put"} <= set(paths["/v1/auto-recharge"])


def test_handler_modules_load(service):
    assert load_function("checkout").app and load_function("stripe_webhook").app


def orders_in(dynamodb: Any) -> list[dict[str, Any]]:
    return [i for i in map(from_item, dynamodb.scan(TableName=TABLE)["Items"]) if i.get("type") == "order"]


def test_checkout_records_its_order_with_what_the_payment_must_be(service, stripe_api, dynamodb):
    create()
    status, answer = checkout({"region": "UK", "quantity": 3})
    assert status == 201
    [order] = orders_in(dynamodb)
    params = stripe_api.of("/v1/checkout/sessions")[0]["params"]
    assert order["order_id"].startswith("chk_") and order["created_at"]
    assert {k: order[k] for k in ("kind", "account_id", "region", "packs", "amount_cents", "currency")} == {
        "kind": "checkout",
        "account_id": "acct-1",
        "region": "GB",
        "packs": 3,
        "amount_cents": 1890,
        "currency": "usd",
    }
    assert (order["session_id"], order["customer_id"], order["status"]) == (
        answer["session_id"],
        params["customer"],
        "open",
    )
    # The session and its PaymentIntent point back at the order; the rest of the metadata is for people.
    assert (
        params["metadata[order_id]"] == params["payment_intent_data[metadata][order_id]"] == order["order_id"]
    )


def test_a_checkout_key_replayed_with_another_body_is_refused_before_stripe(service, stripe_api):
    create()
    assert checkout()[0] == 201
    status, answer = checkout({"region": "AU", "quantity": 3})
    assert status == 422 and answer["error"]["code"] == "idempotency_key_reused"
    assert len(stripe_api.of("/v1/checkout/sessions")) == 1


def test_a_replayed_checkout_answers_its_recorded_session_without_asking_stripe(
    service, stripe_api, dynamodb
):
    create()
    first = checkout()
    asked = len(stripe_api.requests)
    assert checkout() == first and len(stripe_api.requests) == asked
    assert len(orders_in(dynamodb)) == 1


def test_a_checkout_whose_session_stripe_refused_is_completed_by_a_retry(service, stripe_api, dynamodb):
    """The order is written before Stripe is asked: a failed call leaves it `creating`, and never grants."""
    create()
    assert checkout(key="first")[0] == 201  # the customer exists from now on
    stripe_api.fail_with = 500
    assert checkout(key="retried")[0] == 502
    [waiting] = [o for o in orders_in(dynamodb) if o["status"] == "creating"]
    assert "session_id" not in waiting
    stripe_api.fail_with = None
    status, answer = checkout(key="retried")
    assert status == 201
    [done] = [o for o in orders_in(dynamodb) if o["order_id"] == waiting["order_id"]]
    assert (done["status"], done["session_id"]) == ("open", answer["session_id"])
