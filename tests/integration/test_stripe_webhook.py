"""The Stripe webhook through its handler: signatures, exactly-once grants, order, concurrency, clawbacks."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from smscredits import runtime
from smscredits.adapters.dynamo.values import from_item
from smscredits.domain.audit import check_account
from smscredits.services import stripe_events
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
    sign,
    stripe_api,
    stripe_event,
)

__all__ = ["stripe_api"]


def audit(account: str = "acct-1") -> list[str]:
    return check_account(*runtime.container().statements.partition(account))


def unmatched(dynamodb: Any) -> dict[str, str]:
    """The unmatched payments recorded: Stripe object id → reason."""
    items = [from_item(i) for i in dynamodb.scan(TableName=TABLE)["Items"]]
    return {i["object_id"]: i["reason"] for i in items if i.get("type") == "unmatched_payment"}


def purchases(account: str = "acct-1") -> list[dict[str, Any]]:
    entries = call("account_api", "account_get_ledger", claims=user(account))[1]["entries"]
    return [e for e in entries if e["kind"] == "purchase"]


def test_paid_checkout_grants_once_however_often_it_is_delivered(service, stripe_api):
    create()
    bought = checkout(stripe_api)
    body = bought.session_event()
    outcomes = [deliver(body) for _ in range(5)]
    assert outcomes[0] == (200, {"received": True, "outcome": "granted"})
    assert all(o == (200, {"received": True, "outcome": "duplicate"}) for o in outcomes[1:])
    assert balance()["purchased"]["AU"] == 200
    [entry] = purchases()
    assert (
        entry["reference"]["payment_intent"] == "pi_test_123"
        and entry["reference"]["session_id"] == bought.session_id
        and entry["reference"]["order_id"] == bought.order_id
    )
    assert audit() == []


def test_base64_encoded_body_is_verified_over_the_raw_bytes(service, stripe_api):
    create()
    assert deliver(checkout(stripe_api).session_event(), encode=True)[0] == 200
    assert balance()["purchased"]["AU"] == 200


def test_unpaid_checkout_waits_then_async_success_grants_and_async_failure_does_not(service, stripe_api):
    create()
    bought = checkout(stripe_api)
    assert (
        deliver(bought.session_event("stripe_checkout_session_completed_unpaid"))[1]["outcome"]
        == "awaiting_payment"
    )
    assert balance()["purchased"]["AU"] == 0
    assert (
        deliver(bought.session_event("stripe_checkout_session_async_payment_failed"))[1]["outcome"]
        == "payment_failed"
    )
    assert balance()["purchased"]["AU"] == 0
    succeeded = bought.session_event("stripe_checkout_session_async_payment_succeeded")
    assert deliver(succeeded)[1]["outcome"] == "granted"
    assert deliver(succeeded)[1]["outcome"] == "duplicate"
    assert balance()["purchased"]["AU"] == 200 and audit() == []


def test_payment_intent_before_checkout_and_the_reverse_grant_once(service, stripe_api):
    create()
    first = checkout(stripe_api)
    assert deliver(first.intent_event())[1]["outcome"] == "granted"
    assert deliver(first.session_event())[1]["outcome"] == "duplicate"
    create("acct-2")
    second = checkout(stripe_api, account="acct-2", payment_intent="pi_2")
    assert deliver(second.session_event())[1]["outcome"] == "granted"
    assert deliver(second.intent_event())[1]["outcome"] == "duplicate"
    assert balance()["purchased"]["AU"] == 200 and balance("acct-2")["purchased"]["AU"] == 200
    assert len(purchases()) == 1 and len(purchases("acct-2")) == 1
    assert audit() == [] and audit("acct-2") == []


def test_eight_concurrent_deliveries_grant_once(service, stripe_api, dynamodb):
    """Threads against moto's in-process mock (locked per request by local.moto_dynamo.patch_moto); each
    thread has its own store, as separate Lambda instances would. Moto does not prove linearizability."""
    create()
    body = checkout(stripe_api).session_event()
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    payments = runtime.container().payments

    def worker() -> None:
        ports = stripe_events.StripePorts(service_ledger(dynamodb, service), payments)
        barrier.wait()
        outcomes.append(stripe_events.handle_event(ports, body))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["duplicate"] * 7 + ["granted"]
    assert balance()["purchased"]["AU"] == 200 and len(purchases()) == 1 and audit() == []


def test_missing_wrong_tampered_and_expired_signatures_are_refused_and_write_nothing(
    service, stripe_api, dynamodb
):
    create()
    payload = json.dumps(checkout(stripe_api).session_event())
    before, asked = dynamodb.scan(TableName=TABLE)["Items"], len(stripe_api.requests)
    cases = [
        "",
        "t=1,v1=deadbeef",
        sign(payload, secret="whsec_other"),
        sign(payload, at=int(time.time()) - 301),
        "garbage",
    ]
    for signature in cases:
        status, answer = deliver(payload, signature=signature)
        assert status == 400 and answer["error"]["code"] == "invalid_signature", signature
        assert set(answer["error"]) == {"code", "message", "details"}
    tampered = payload.replace('"packs": "2"', '"packs": "3"')
    assert deliver(tampered, signature=sign(payload))[0] == 400
    assert dynamodb.scan(TableName=TABLE)["Items"] == before and len(stripe_api.requests) == asked


def test_a_second_v1_entry_verifies_when_one_matches(service, stripe_api):
    create()
    payload = json.dumps(checkout(stripe_api).session_event())
    at = int(time.time())
    good = sign(payload, at=at).split(",")[1]
    assert deliver(payload, signature=f"t={at},v1={'0' * 64},{good}")[0] == 200


def test_unknown_event_types_are_acknowledged_and_change_nothing(service, stripe_api, dynamodb):
    create()
    before = dynamodb.scan(TableName=TABLE)["Items"]
    assert deliver(stripe_event("stripe_customer_created")) == (200, {"received": True, "outcome": "ignored"})
    assert dynamodb.scan(TableName=TABLE)["Items"] == before


def test_an_amount_other_than_the_order_recorded_is_unfulfilled_never_granted_and_alerts(
    service, stripe_api, dynamodb, caplog
):
    create()
    bought = checkout(stripe_api)
    for changes in ({"amount_total": 620}, {"currency": "eur"}):
        assert deliver(bought.session_event(**changes))[1]["outcome"] == "unfulfilled"
    assert deliver(bought.intent_event(amount_received=1))[1]["outcome"] == "unfulfilled"
    assert balance()["purchased"]["AU"] == 0 and purchases() == []
    assert unmatched(dynamodb) == {bought.session_id: "amount", "pi_test_123": "amount"}
    assert any("ALERT" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert deliver(bought.session_event())[1]["outcome"] == "granted"  # the genuine payment still grants


def test_full_refund_claws_back_unspent_credits_once(service, stripe_api):
    create()
    deliver(checkout(stripe_api).session_event())
    adjust("purchased:AU", -150)  # 150 of the 200 were spent
    assert deliver(stripe_event("stripe_charge_refunded"))[1]["outcome"] == "clawed_back"
    assert deliver(stripe_event("stripe_charge_refunded"))[1]["outcome"] == "duplicate"
    assert balance()["purchased"]["AU"] == 0
    assert audit() == []


def test_partial_refunds_take_their_proportional_share(service, stripe_api):
    create()
    deliver(checkout(stripe_api).session_event())
    assert deliver(stripe_event("stripe_charge_refunded", amount_refunded=310, refunded=False))[0] == 200
    assert balance()["purchased"]["AU"] == 150  # 200 * 310 / 1240 = 50
    deliver(stripe_event("stripe_charge_refunded", amount_refunded=310, refunded=False))
    assert balance()["purchased"]["AU"] == 150
    deliver(stripe_event("stripe_charge_refunded", amount_refunded=1240))
    assert balance()["purchased"]["AU"] == 0 and audit() == []


def test_dispute_then_refund_of_the_same_charge_takes_back_once_and_pauses_auto_recharge(service, stripe_api):
    create()
    put = {"enabled": True, "regions": {"AU": {"packs": 1}}, "monthly_cap_cents": 5000}
    assert call("checkout", "account_put_auto_recharge", body=put, claims=user())[0] == 200
    deliver(checkout(stripe_api).session_event())
    adjust("purchased:AU", 100, key="later-purchase")  # credits that did not come from this charge
    assert balance()["purchased"]["AU"] == 300
    assert deliver(stripe_event("stripe_charge_dispute_created"))[1]["outcome"] == "clawed_back"
    assert balance()["purchased"]["AU"] == 100
    # the dispute already took the whole charge's credits: the refund records its share and takes nothing
    assert deliver(stripe_event("stripe_charge_refunded"))[1]["outcome"] == "recorded"
    assert deliver(stripe_event("stripe_charge_dispute_created"))[1]["outcome"] == "unchanged"
    assert balance()["purchased"]["AU"] == 100
    assert balance()["auto_recharge"] == {"enabled": False, "disabled_reason": "payment_disputed"}
    assert get_auto_recharge()["disabled_reason"] == "payment_disputed"
    assert audit() == []


def test_refund_of_a_payment_never_granted_changes_nothing(service, stripe_api, dynamodb):
    create()
    before = dynamodb.scan(TableName=TABLE)["Items"]
    status, answer = deliver(stripe_event("stripe_charge_refunded"))
    assert (status, answer["error"]["code"]) == (409, "payment_not_granted")  # Stripe redelivers it later
    assert dynamodb.scan(TableName=TABLE)["Items"] == before


def test_checkout_that_saves_the_card_puts_it_on_file(service, stripe_api: FakeStripeHttp):
    create()
    put = {"enabled": True, "regions": {"AU": {"packs": 1}}, "monthly_cap_cents": 5000}
    assert call("checkout", "account_put_auto_recharge", body=put, claims=user())[0] == 200
    bought = checkout(stripe_api)
    assert bought.metadata["save_card"] == "true"
    deliver(bought.session_event())
    assert get_auto_recharge()["card_on_file"] is True
    assert stripe_api.of("/v1/payment_intents/pi_test_123")[0]["method"] == "get"


# ---- metadata is not proof: only an order this service recorded is granted (issue 12) ----------------


def test_a_real_session_whose_metadata_names_another_account_credits_nobody(service, stripe_api, dynamodb):
    create()
    create("acct-b")
    bought = checkout(stripe_api)
    forged = bought.session_event(metadata={**bought.metadata, "account_id": "acct-b"})
    assert deliver(forged)[1]["outcome"] == "unmatched"
    assert balance("acct-b")["purchased"]["AU"] == 0 and balance()["purchased"]["AU"] == 0
    assert unmatched(dynamodb) == {bought.session_id: "metadata_disagrees"}
    # The owner's genuine event is not taken for a duplicate: it grants the owner.
    assert deliver(bought.session_event())[1]["outcome"] == "granted"
    assert balance()["purchased"]["AU"] == 200 and balance("acct-b")["purchased"]["AU"] == 0


def test_a_recharge_the_service_never_started_grants_nothing(service, stripe_api, dynamodb):
    create()
    forged = stripe_event(
        "stripe_payment_intent_succeeded",
        id="pi_forged",
        amount=620,
        amount_received=620,
        metadata={
            "account_id": "acct-1",
            "region": "AU",
            "packs": "1",
            "kind": "recharge",
            "recharge_id": "rch_acct-1_AU_1",
            "order_id": "rch_acct-1_AU_1",
        },
    )
    assert deliver(forged)[1]["outcome"] == "unmatched"
    assert balance()["purchased"]["AU"] == 0 and get_auto_recharge()["spent_this_period_cents"] == 0
    assert unmatched(dynamodb) == {"pi_forged": "unknown_order"}


def test_a_session_or_payment_intent_the_api_never_created_grants_nothing(service, stripe_api, dynamodb):
    create()
    assert deliver(stripe_event("stripe_checkout_session_completed"))[1]["outcome"] == "unmatched"
    assert deliver(stripe_event("stripe_payment_intent_succeeded"))[1]["outcome"] == "unmatched"
    assert (
        deliver(stripe_event("stripe_checkout_session_async_payment_succeeded"))[1]["outcome"] == "unmatched"
    )
    assert balance()["purchased"]["AU"] == 0 and purchases() == []
    assert unmatched(dynamodb) == {
        "cs_test_a1b2c3": "unknown_order",
        "pi_test_123": "unknown_order",
        "cs_test_async1": "unknown_order",
    }


def test_another_session_or_customer_pointing_at_a_real_order_grants_nothing(service, stripe_api, dynamodb):
    create()
    bought = checkout(stripe_api)
    assert deliver(bought.session_event(id="cs_test_not_ours"))[1]["outcome"] == "unmatched"
    assert (
        deliver(bought.intent_event(id="pi_other_customer", customer="cus_other"))[1]["outcome"]
        == "unmatched"
    )
    assert balance()["purchased"]["AU"] == 0
    assert unmatched(dynamodb) == {"cs_test_not_ours": "unknown_session", "pi_other_customer": "customer"}


def test_an_order_paid_by_one_payment_intent_is_not_granted_again_for_another(service, stripe_api, dynamodb):
    create()
    bought = checkout(stripe_api)
    assert deliver(bought.session_event())[1]["outcome"] == "granted"
    assert deliver(bought.intent_event(id="pi_second"))[1]["outcome"] == "unmatched"
    assert deliver(bought.intent_event())[1]["outcome"] == "duplicate"
    assert balance()["purchased"]["AU"] == 200 and len(purchases()) == 1
    assert unmatched(dynamodb) == {"pi_second": "paid_by_another_payment_intent"}


def test_racing_payment_intents_for_one_order_grant_once_and_the_rest_are_unmatched(
    service, stripe_api, dynamodb
):
    """Eight PaymentIntents claim the same unpaid order at once, from separate instances: the order's
    conditional update in the grant binds the first; the others are unmatched, not duplicates."""
    create()
    bought = checkout(stripe_api)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    payments = runtime.container().payments

    def worker(n: int) -> None:
        ports = stripe_events.StripePorts(service_ledger(dynamodb, service), payments)
        body = bought.intent_event(id=f"pi_race_{n}")
        barrier.wait()
        outcomes.append(stripe_events.handle_event(ports, body))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["granted"] + ["unmatched"] * 7
    assert balance()["purchased"]["AU"] == 200 and len(purchases()) == 1 and audit() == []
    assert set(unmatched(dynamodb).values()) == {"paid_by_another_payment_intent"}


def test_another_integrations_payments_are_ignored_without_an_alert(service, stripe_api, dynamodb, caplog):
    create()
    before = dynamodb.scan(TableName=TABLE)["Items"]
    foreign = {"metadata": {"shop_order": "A-1001"}}
    assert deliver(stripe_event("stripe_payment_intent_succeeded", **foreign))[1]["outcome"] == "ignored"
    assert deliver(stripe_event("stripe_checkout_session_completed", **foreign))[1]["outcome"] == "ignored"
    assert dynamodb.scan(TableName=TABLE)["Items"] == before
    assert not any("ALERT" in r.getMessage() for r in caplog.records)


def test_a_payment_failure_for_a_recharge_never_started_changes_nothing(service, stripe_api):
    create()
    put = {"enabled": True, "regions": {"AU": {"packs": 1}}, "monthly_cap_cents": 5000}
    assert call("checkout", "account_put_auto_recharge", body=put, claims=user())[0] == 200
    metadata = {"account_id": "acct-1", "region": "AU", "kind": "recharge", "recharge_id": "rch_acct-1_AU_9"}
    for n in range(3):
        failed = stripe_event("stripe_payment_intent_payment_failed", id=f"pi_f{n}", metadata=metadata)
        assert deliver(failed)[1]["outcome"] == "ignored"
    state = get_auto_recharge()
    assert (state["enabled"], state["consecutive_failures"], state["disabled_reason"]) == (True, 0, None)
