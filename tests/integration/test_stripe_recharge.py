"""Auto-recharge: a short send charges the saved card once, the cap, the decline ladder, authentication."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from smscredits import runtime
from smscredits.adapters.dynamo.values import from_item
from smscredits.domain.audit import check_account
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.services import recharge, sending
from smscredits.services.recharge import AutoRecharger
from tests.conftest import TABLE
from tests.functions import call, user
from tests.integration.conftest import create, service_ledger
from tests.integration.stripe_support import (
    FakeStripeHttp,
    adjust,
    balance,
    checkout,
    deliver,
    get_auto_recharge,
    put_auto_recharge,
    recharge_event,
    stripe_api,
)

# Use cases: they run on the in-memory ledger (tests/contract holds it to DynamoDB's rules).
pytestmark = pytest.mark.memory_ledger

__all__ = ["stripe_api"]
AU = "+61491570110"


def audit(account: str = "acct-1") -> list[str]:
    return check_account(*runtime.container().statements.partition(account))


def send(key: str) -> tuple[int, Any]:
    return call(
        "send",
        "send_post_message",
        body={"to": AU, "body": "Hello"},
        headers={"idempotency-key": key},
        claims=user(),
    )


def ready(stripe_api: FakeStripeHttp, cap: int = 5000, packs: int = 1, threshold: int = 0) -> None:
    """An account with its card on file (saved by a checkout), auto-recharge on, and no credits left."""
    create()
    status, answer = put_auto_recharge(
        {
            "enabled": True,
            "regions": {"AU": {"packs": packs, "threshold": threshold}},
            "monthly_cap_cents": cap,
        }
    )
    assert status == 200, answer
    deliver(checkout(stripe_api).session_event())
    assert get_auto_recharge()["card_on_file"] is True
    adjust("included", -50, key="drain-included")
    adjust("purchased:AU", -200, key="drain-au")


def test_settings_round_trip_and_cap_is_required_to_enable(service, stripe_api):
    create()
    status, answer = put_auto_recharge({"enabled": True, "regions": {"AU": {"packs": 3}}})
    assert status == 422 and answer["error"]["code"] == "invalid_request"
    status, answer = put_auto_recharge(
        {"enabled": True, "regions": {"NZ": {"packs": 3, "threshold": 5}}, "monthly_cap_cents": 9000}
    )
    assert status == 200
    assert answer == {
        "enabled": True,
        "regions": {"NZ": {"packs": 3, "threshold": 5}},
        "monthly_cap_cents": 9000,
        "card_on_file": False,
        "spent_this_period_cents": 0,
        "consecutive_failures": 0,
        "disabled_reason": None,
        "last_recharge_at": None,
        "setup_url": "https://checkout.stripe.com/c/pay/cs_test_2",  # no card on file: where to put one
    }
    assert get_auto_recharge() == {**answer, "setup_url": None}
    assert (
        put_auto_recharge({"enabled": True, "regions": {"AU": {"packs": 101}}, "monthly_cap_cents": 1})[0]
        == 422
    )


def test_a_short_send_recharges_once_and_then_sends(service, stripe_api: FakeStripeHttp):
    ready(stripe_api)
    status, answer = send("k1")
    assert status == 202 and answer["status"] == "sent", answer
    [charge] = stripe_api.charges
    params = charge["params"]
    assert charge["idempotency_key"] == "rch_acct-1_AU_1"
    assert (params["amount"], params["currency"], params["off_session"], params["confirm"]) == (
        "620",
        "usd",
        "true",
        "true",
    )
    assert params["customer"].startswith("cus_") and params["payment_method"] == "pm_card_saved"
    assert balance()["purchased"]["AU"] == 99
    state = get_auto_recharge()
    assert (
        state["spent_this_period_cents"] == 620
        and state["last_recharge_at"]
        and state["consecutive_failures"] == 0
    )
    # Stripe's payment_intent.succeeded for the same PaymentIntent arrives later: no second grant.
    webhook = recharge_event(stripe_api)
    assert deliver(webhook)[1]["outcome"] == "duplicate"
    assert balance()["purchased"]["AU"] == 99 and audit() == []


def test_sixteen_parallel_sends_at_zero_make_one_charge_and_all_send(service, stripe_api, dynamodb):
    ready(stripe_api)
    barrier = threading.Barrier(16)
    results: list[str] = []
    ports = runtime.container()

    def worker(n: int) -> None:
        # 16 writers on one balance item outlast the default 8 optimistic attempts (a 503 "too busy");
        # more attempts keep this test about the recharge, not about the ledger's contention budget.
        ledger = service_ledger(dynamodb, service, max_attempts=64)
        recharger = AutoRecharger(ledger, lambda: ports.payments)
        command = sending.SendCommand(
            "acct-1", IdempotencyKey(f"p{n}"), AU, "Hello", "https://api.example.com"
        )
        barrier.wait()
        results.append(sending.send_message(ledger, ports.sender, recharger, command).status)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["sent"] * 16  # each answered 202, sent
    assert len(stripe_api.charges) == 1
    assert balance()["purchased"]["AU"] == 100 - 16 and audit() == []


def test_the_monthly_cap_stops_charging(service, stripe_api):
    ready(stripe_api, cap=1000)
    assert send("k1")[0] == 202
    adjust("purchased:AU", -99, key="spend-rest")
    status, answer = send("k2")
    assert status == 402 and answer["error"]["code"] == "insufficient_credits"
    assert len(stripe_api.charges) == 1 and get_auto_recharge()["spent_this_period_cents"] == 620
    assert audit() == []


def test_three_declines_in_a_row_switch_auto_recharge_off(service, stripe_api):
    ready(stripe_api)
    stripe_api.card = "decline"
    for n in range(3):
        assert send(f"k{n}")[0] == 402
        assert get_auto_recharge()["consecutive_failures"] == n + 1
    assert [c["idempotency_key"] for c in stripe_api.charges] == [
        "rch_acct-1_AU_1",
        "rch_acct-1_AU_2",
        "rch_acct-1_AU_3",
    ]
    state = get_auto_recharge()
    assert state["enabled"] is False and state["disabled_reason"] == "card_declined"
    assert state["spent_this_period_cents"] == 0
    assert balance()["auto_recharge"] == {"enabled": False, "disabled_reason": "card_declined"}
    assert send("k3")[0] == 402 and len(stripe_api.charges) == 3
    assert audit() == []


def test_a_card_stripe_no_longer_knows_counts_as_a_decline_not_a_500(service, stripe_api):
    ready(stripe_api)
    stripe_api.card = "detached"
    status, answer = send("k1")
    assert status == 402 and answer["error"]["code"] == "insufficient_credits"
    assert get_auto_recharge()["consecutive_failures"] == 1
    assert balance()["purchased"]["AU"] == 0 and audit() == []


def test_a_decline_is_retried_at_the_next_trigger(service, stripe_api):
    ready(stripe_api)
    stripe_api.card = "decline"
    assert send("k1")[0] == 402
    failed = recharge_event(stripe_api, name="stripe_payment_intent_payment_failed", amount_received=0)
    assert deliver(failed)[1]["outcome"] == "duplicate"  # the webhook of the decline already recorded
    stripe_api.card = "succeed"
    assert send("k2")[0] == 202
    assert get_auto_recharge()["consecutive_failures"] == 0 and balance()["purchased"]["AU"] == 99


def test_authentication_required_switches_off_at_once(service, stripe_api):
    ready(stripe_api)
    stripe_api.card = "authentication_required"
    assert send("k1")[0] == 402
    state = get_auto_recharge()
    assert state["enabled"] is False and state["disabled_reason"] == "authentication_required"
    assert balance()["auto_recharge"]["disabled_reason"] == "authentication_required"
    assert send("k2")[0] == 402 and len(stripe_api.charges) == 1
    _, answer = put_auto_recharge(
        {"enabled": True, "regions": {"AU": {"packs": 1}}, "monthly_cap_cents": 5000}
    )
    assert (
        answer["enabled"] is True
        and answer["disabled_reason"] is None
        and answer["consecutive_failures"] == 0
    )


def test_an_unknown_charge_outcome_is_settled_by_the_webhook(service, stripe_api, monkeypatch):
    ready(stripe_api)
    monkeypatch.setattr(recharge, "WAIT_POLLS", 2)
    monkeypatch.setattr(recharge, "WAIT_SECONDS", 0.01)
    stripe_api.card = "error500"
    assert send("k1")[0] == 402
    assert get_auto_recharge()["spent_this_period_cents"] == 620  # reserved until Stripe says what happened
    webhook = recharge_event(stripe_api)  # the PaymentIntent Stripe made although its answer was a 500
    assert deliver(webhook)[1]["outcome"] == "granted"
    assert balance()["purchased"]["AU"] == 100
    stripe_api.card = "succeed"
    assert send("k2")[0] == 202 and len(stripe_api.charges) == 2  # credits were there: no new charge
    assert audit() == []


# ---- the threshold trigger --------------------------------------------------------------------------


def recharge_keys(stripe_api: FakeStripeHttp) -> list[str]:
    """One idempotency key per recharge (the SDK's retry of a failed request reuses it)."""
    return sorted({str(c["idempotency_key"]) for c in stripe_api.charges})


def test_a_send_that_leaves_the_balance_at_the_threshold_recharges_once(service, stripe_api):
    ready(stripe_api, threshold=10)
    adjust("purchased:AU", 12, key="to-twelve")
    assert send("k1")[0] == 202 and stripe_api.charges == []  # 11 left: above the threshold
    status, answer = send("k2")  # 10 left: at the threshold
    assert status == 202 and answer["funding"] == [{"pool": "purchased:AU", "credits": 1}], answer
    assert recharge_keys(stripe_api) == ["rch_acct-1_AU_1"]
    assert balance()["purchased"]["AU"] == 110
    assert send("k3")[0] == 202 and len(stripe_api.charges) == 1  # 109: well above it
    assert get_auto_recharge()["spent_this_period_cents"] == 620 and audit() == []


def test_no_second_threshold_charge_while_one_is_in_flight(service, stripe_api):
    ready(stripe_api, threshold=10)
    adjust("purchased:AU", 11, key="to-eleven")
    stripe_api.card = "error500"  # the outcome stays unknown: the recharge stays in flight
    assert send("k1")[0] == 202  # 10 left: a recharge starts
    assert send("k2")[0] == 202  # 9 left: one is in flight, so no second one
    assert recharge_keys(stripe_api) == ["rch_acct-1_AU_1"]
    assert balance()["purchased"]["AU"] == 9 and get_auto_recharge()["spent_this_period_cents"] == 620
    assert audit() == []


def test_the_threshold_trigger_respects_the_monthly_cap(service, stripe_api):
    ready(stripe_api, threshold=10, cap=1000)
    adjust("purchased:AU", 11, key="to-eleven")
    assert send("k1")[0] == 202 and balance()["purchased"]["AU"] == 110
    adjust("purchased:AU", -99, key="back-to-eleven")
    assert send("k2")[0] == 202  # at the threshold again, but a second pack would pass the cap
    assert recharge_keys(stripe_api) == ["rch_acct-1_AU_1"]
    assert balance()["purchased"]["AU"] == 10 and get_auto_recharge()["spent_this_period_cents"] == 620
    assert audit() == []


def test_a_failed_threshold_recharge_never_changes_the_send_answer(service, stripe_api, monkeypatch):
    ready(stripe_api, threshold=10)
    adjust("purchased:AU", 11, key="to-eleven")
    stripe_api.card = "decline"
    status, answer = send("k1")
    assert status == 202 and answer["status"] == "sent", answer
    assert get_auto_recharge()["consecutive_failures"] == 1 and len(stripe_api.charges) == 1

    def broken() -> Any:
        raise RuntimeError("Stripe client could not be built")

    ports = runtime.container()
    runtime.use(ports.replace(recharger=AutoRecharger(ports.ledger, broken)))
    status, answer = send("k2")  # 9 left: the decline is retried, and this time the client breaks
    assert status == 202 and answer["status"] == "sent", answer
    assert balance()["purchased"]["AU"] == 9 and audit() == []


def test_a_recharge_is_recorded_as_an_order_with_its_claim_and_bound_to_its_payment(
    service, stripe_api, dynamodb
):
    ready(stripe_api)
    assert send("k1")[0] == 202
    items = [from_item(i) for i in dynamodb.scan(TableName=TABLE)["Items"]]
    [order] = [i for i in items if i.get("type") == "order" and i["kind"] == "recharge"]
    params = stripe_api.charges[0]["params"]
    assert order["order_id"] == "rch_acct-1_AU_1" == params["metadata[order_id]"]
    assert (
        order["account_id"],
        order["region"],
        order["packs"],
        order["amount_cents"],
        order["currency"],
    ) == (
        "acct-1",
        "AU",
        1,
        620,
        "usd",
    )
    assert (order["customer_id"], order["status"], order["payment_intent"]) == (
        params["customer"],
        "paid",
        stripe_api.intents[0],
    )
