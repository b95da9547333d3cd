"""What becomes of an order Stripe did not pay as ordered: a price change never strands a payment, a payment
of another amount is an unfulfilled payment (recorded, counted, alarmed, shown on the order), a failed
delayed payment is recorded on the order (issue 16)."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from smscredits.domain import catalog
from smscredits.services import purchases
from tests.functions import ROOT, call, user
from tests.integration.conftest import create
from tests.integration.stripe_support import balance, checkout, deliver, stripe_api
from tests.integration.test_observability import _metrics as metrics
from tests.integration.test_observability import stdout

__all__ = ["stdout", "stripe_api"]


def order(order_id: str, account: str = "acct-1") -> tuple[int, dict[str, Any]]:
    status, answer = call(
        "account_api",
        "account_get_pack_order",
        claims=user(account),
        path=f"/v1/packs/orders/{order_id}",
        path_params={"order_id": order_id},
    )
    return status, answer


def raise_the_au_price(monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's price table says 700 cents an AU pack (a price change deployed while sessions are open)."""
    raised = {**catalog.REGIONS, "AU": catalog.REGIONS["AU"]._replace(pack_price_cents=700)}
    monkeypatch.setattr(catalog, "REGIONS", raised)
    monkeypatch.setattr(purchases, "REGIONS", raised)


def test_a_price_change_between_the_order_and_the_payment_grants_at_the_recorded_price(
    service, stripe_api, monkeypatch
):
    create()
    bought = checkout(stripe_api)  # 2 AU packs at 620 cents: the order records 1240
    raise_the_au_price(monkeypatch)
    assert catalog.pack_price_cents("AU", 2) == 1400  # today's table differs from the order
    assert deliver(bought.session_event())[1]["outcome"] == "granted"
    assert balance()["purchased"]["AU"] == 200
    assert order(bought.order_id) == (
        200,
        {
            "order_id": bought.order_id,
            "kind": "checkout",
            "region": "AU",
            "packs": 2,
            "credits": 200,
            "amount_cents": 1240,
            "currency": "usd",
            "status": "paid",
            "failure": None,
            "created_at": order(bought.order_id)[1]["created_at"],
            "paid_at": order(bought.order_id)[1]["paid_at"],
        },
    )


def test_a_replayed_checkout_after_a_price_change_asks_stripe_for_the_recorded_price(
    service, stripe_api, monkeypatch
):
    """The order is written before Stripe is asked; a crash in between is finished by the caller's retry,
    which must ask Stripe for the price the order recorded, not today's (else the payment never matches)."""
    create()
    route = stripe_api._route

    def sessions_down(method: str, path: str, params: dict[str, str], n: int) -> Any:
        if path == "/v1/checkout/sessions":
            raise stripe.APIConnectionError("connection reset", should_retry=False)  # no answer kept
        return route(method, path, params, n)

    monkeypatch.setattr(stripe_api, "_route", sessions_down)
    status, _ = call(
        "checkout",
        "checkout_post_session",
        body={"region": "AU", "quantity": 2},
        headers={"idempotency-key": "buy-1"},
        claims=user(),
    )
    assert status >= 500
    monkeypatch.setattr(stripe_api, "_route", route)
    raise_the_au_price(monkeypatch)
    bought = checkout(stripe_api)
    assert bought.amount == 1240
    assert deliver(bought.session_event())[1]["outcome"] == "granted"
    assert balance()["purchased"]["AU"] == 200


@pytest.mark.parametrize("changes", [{"amount_total": 1400}, {"currency": "eur"}], ids=["amount", "currency"])
def test_a_payment_of_another_amount_is_an_unfulfilled_payment_shown_on_the_order_counted_and_alarmed(
    service, stripe_api, stdout, caplog, changes
):
    create()
    bought = checkout(stripe_api)
    stdout()
    assert deliver(bought.session_event(**changes)) == (200, {"received": True, "outcome": "unfulfilled"})
    assert deliver(bought.session_event(**changes))[1]["outcome"] == "unfulfilled"  # redelivered: once
    assert balance()["purchased"]["AU"] == 0
    status, shown = order(bought.order_id)
    assert status == 200 and (shown["status"], shown["failure"]) == ("unfulfilled", "paid_amount_differs")
    counted = metrics(stdout())
    assert counted.get("UnfulfilledPayment") == 1.0 and "UnmatchedPayment" not in counted
    assert any(r.levelname == "ERROR" and "ALERT customer paid" in r.getMessage() for r in caplog.records)


def test_the_unfulfilled_payment_alarm_is_in_the_template():
    template = (ROOT / "template.yaml").read_text()
    assert "UnfulfilledPaymentAlarm:" in template and "MetricName: UnfulfilledPayment" in template


def test_checkout_sessions_are_created_with_adaptive_pricing_off(service, stripe_api):
    create()
    checkout(stripe_api)
    [request] = stripe_api.of("/v1/checkout/sessions")
    assert request["params"]["adaptive_pricing[enabled]"] == "false"


def test_a_failed_delayed_payment_is_recorded_on_the_order_and_counted(service, stripe_api, stdout):
    create()
    bought = checkout(stripe_api)
    stdout()
    failed = bought.session_event("stripe_checkout_session_async_payment_failed", payment_status="unpaid")
    assert deliver(failed)[1]["outcome"] == "payment_failed"
    assert deliver(failed)[1]["outcome"] == "duplicate"  # redelivered: recorded and counted once
    status, shown = order(bought.order_id)
    assert status == 200
    assert (shown["status"], shown["failure"]) == ("failed", "async_payment_failed")
    assert metrics(stdout()).get("CheckoutPaymentFailed") == 1.0
    assert balance()["purchased"]["AU"] == 0


def test_an_order_is_shown_to_its_own_account_only(service, stripe_api):
    create()
    create("acct-2")
    bought = checkout(stripe_api)
    status, answer = order(bought.order_id, account="acct-2")
    assert status == 404 and answer["error"]["code"] == "not_found"
    assert order("chk_never")[0] == 404
