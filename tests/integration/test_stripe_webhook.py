"""The Stripe webhook through its handler: signatures, exactly-once grants, order, concurrency, clawbacks."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from smscredits import runtime
from smscredits.adapters.ledger_store import LedgerStore
from smscredits.domain.audit import check_account
from smscredits.services import stripe_events
from tests.conftest import TABLE
from tests.functions import call, user
from tests.integration.conftest import create
from tests.integration.stripe_support import (
    FakeStripeHttp,
    adjust,
    balance,
    deliver,
    get_auto_recharge,
    sign,
    stripe_api,
    stripe_event,
)

__all__ = ["stripe_api"]


def audit(account: str = "acct-1") -> list[str]:
    return check_account(*runtime.reader().partition(account))


def purchases(account: str = "acct-1") -> list[dict[str, Any]]:
    entries = call("account_api", "account_get_ledger", claims=user(account))[1]["entries"]
    return [e for e in entries if e["kind"] == "purchase"]


def test_paid_checkout_grants_once_however_often_it_is_delivered(service, stripe_api):
    create()
    body = stripe_event("stripe_checkout_session_completed")
    outcomes = [deliver(body) for _ in range(5)]
    assert outcomes[0] == (200, {"received": True, "outcome": "granted"})
    assert all(o == (200, {"received": True, "outcome": "duplicate"}) for o in outcomes[1:])
    assert balance()["purchased"]["AU"] == 200
    [entry] = purchases()
    assert (
        entry["reference"]["payment_intent"] == "pi_test_123"
        and entry["reference"]["session_id"] == "cs_test_a1b2c3"
    )
    assert audit() == []


def test_base64_encoded_body_is_verified_over_the_raw_bytes(service, stripe_api):
    create()
    assert deliver(stripe_event("stripe_checkout_session_completed"), encode=True)[0] == 200
    assert balance()["purchased"]["AU"] == 200


def test_unpaid_checkout_waits_then_async_success_grants_and_async_failure_does_not(service, stripe_api):
    create()
    assert (
        deliver(stripe_event("stripe_checkout_session_completed_unpaid"))[1]["outcome"] == "awaiting_payment"
    )
    assert balance()["purchased"]["AU"] == 0
    assert (
        deliver(stripe_event("stripe_checkout_session_async_payment_failed"))[1]["outcome"]
        == "payment_failed"
    )
    assert balance()["purchased"]["AU"] == 0
    assert deliver(stripe_event("stripe_checkout_session_async_payment_succeeded"))[1]["outcome"] == "granted"
    assert (
        deliver(stripe_event("stripe_checkout_session_async_payment_succeeded"))[1]["outcome"] == "duplicate"
    )
    assert balance()["purchased"]["AU"] == 200 and audit() == []


def test_payment_intent_before_checkout_and_the_reverse_grant_once(service, stripe_api):
    create()
    assert deliver(stripe_event("stripe_payment_intent_succeeded"))[1]["outcome"] == "granted"
    assert deliver(stripe_event("stripe_checkout_session_completed"))[1]["outcome"] == "duplicate"
    create("acct-2")
    session = stripe_event(
        "stripe_checkout_session_completed",
        id="cs_2",
        payment_intent="pi_2",
        metadata={"account_id": "acct-2", "region": "AU", "packs": "2"},
    )
    intent = stripe_event(
        "stripe_payment_intent_succeeded",
        id="pi_2",
        metadata={"account_id": "acct-2", "region": "AU", "packs": "2"},
    )
    assert deliver(session)[1]["outcome"] == "granted"
    assert deliver(intent)[1]["outcome"] == "duplicate"
    assert balance()["purchased"]["AU"] == 200 and balance("acct-2")["purchased"]["AU"] == 200
    assert len(purchases()) == 1 and len(purchases("acct-2")) == 1
    assert audit() == [] and audit("acct-2") == []


def test_eight_concurrent_deliveries_grant_once(service, stripe_api, dynamodb):
    """Threads against moto's in-process mock (locked per request by local.moto_dynamo.patch_moto); each
    thread has its own store, as separate Lambda instances would. Moto does not prove linearizability."""
    create()
    body = stripe_event("stripe_checkout_session_completed")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def worker() -> None:
        store = LedgerStore(TABLE, client=dynamodb, clock=service)
        barrier.wait()
        outcomes.append(stripe_events.handle_event(store, runtime.payments, body))

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
    before = dynamodb.scan(TableName=TABLE)["Items"]
    payload = json.dumps(stripe_event("stripe_checkout_session_completed"))
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
    assert dynamodb.scan(TableName=TABLE)["Items"] == before and stripe_api.requests == []


def test_a_second_v1_entry_verifies_when_one_matches(service, stripe_api):
    create()
    payload = json.dumps(stripe_event("stripe_checkout_session_completed"))
    at = int(time.time())
    good = sign(payload, at=at).split(",")[1]
    assert deliver(payload, signature=f"t={at},v1={'0' * 64},{good}")[0] == 200


def test_unknown_event_types_are_acknowledged_and_change_nothing(service, stripe_api, dynamodb):
    create()
    before = dynamodb.scan(TableName=TABLE)["Items"]
    assert deliver(stripe_event("stripe_customer_created")) == (200, {"received": True, "outcome": "ignored"})
    assert dynamodb.scan(TableName=TABLE)["Items"] == before


def test_amount_that_does_not_match_the_price_table_grants_nothing_and_alerts(
    service, stripe_api, dynamodb, caplog
):
    create()
    before = dynamodb.scan(TableName=TABLE)["Items"]
    for changes in (
        {"amount_total": 620},
        {"currency": "eur"},
        {"metadata": {"account_id": "acct-1", "region": "AU", "packs": "0"}},
    ):
        assert (
            deliver(stripe_event("stripe_checkout_session_completed", **changes))[1]["outcome"]
            == "amount_mismatch"
        )
    assert (
        deliver(stripe_event("stripe_payment_intent_succeeded", amount_received=1))[1]["outcome"]
        == "amount_mismatch"
    )
    assert dynamodb.scan(TableName=TABLE)["Items"] == before
    assert any("ALERT" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_full_refund_claws_back_unspent_credits_once(service, stripe_api):
    create()
    deliver(stripe_event("stripe_checkout_session_completed"))
    adjust("purchased:AU", -150)  # 150 of the 200 were spent
    assert deliver(stripe_event("stripe_charge_refunded"))[1]["outcome"] == "clawed_back"
    assert deliver(stripe_event("stripe_charge_refunded"))[1]["outcome"] == "duplicate"
    assert balance()["purchased"]["AU"] == 0
    assert audit() == []


def test_partial_refunds_take_their_proportional_share(service, stripe_api):
    create()
    deliver(stripe_event("stripe_checkout_session_completed"))
    assert deliver(stripe_event("stripe_charge_refunded", amount_refunded=310, refunded=False))[0] == 200
    assert balance()["purchased"]["AU"] == 150  # 200 * 310 / 1240 = 50
    deliver(stripe_event("stripe_charge_refunded", amount_refunded=310, refunded=False))
    assert balance()["purchased"]["AU"] == 150
    deliver(stripe_event("stripe_charge_refunded", amount_refunded=1240))
    assert balance()["purchased"]["AU"] == 0 and audit() == []


def test_dispute_then_refund_of_the_same_charge_takes_back_once_and_pauses_auto_recharge(service, stripe_api):
    create()
    put = {"enabled": True, "regions": {"AU": {"packs": 1}}, "monthly_cap_cents": 5000}
    assert call("account_api", "account_put_auto_recharge", body=put, claims=user())[0] == 200
    deliver(stripe_event("stripe_checkout_session_completed"))
    adjust("purchased:AU", 100, key="later-purchase")  # credits that did not come from this charge
    assert balance()["purchased"]["AU"] == 300
    assert deliver(stripe_event("stripe_charge_dispute_created"))[1]["outcome"] == "clawed_back"
    assert balance()["purchased"]["AU"] == 100
    assert deliver(stripe_event("stripe_charge_refunded"))[1]["outcome"] == "clawed_back"
    assert deliver(stripe_event("stripe_charge_dispute_created"))[1]["outcome"] == "duplicate"
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
    metadata = {"account_id": "acct-1", "region": "AU", "packs": "2", "save_card": "true"}
    deliver(stripe_event("stripe_checkout_session_completed", metadata=metadata))
    assert get_auto_recharge()["card_on_file"] is True
    assert stripe_api.of("/v1/payment_intents/pi_test_123")[0]["method"] == "get"
