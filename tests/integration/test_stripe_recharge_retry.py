"""A recharge claim whose lease ran out never charges twice, even after Stripe forgot its idempotency key
(24 hours): the retried claim settles from the PaymentIntent the first attempt made (issue 16)."""

from __future__ import annotations

import pytest

from smscredits import runtime
from smscredits.services import recharge
from tests.integration.stripe_support import FakeStripeHttp, balance, stripe_api
from tests.integration.test_stripe_recharge import audit, ready, send

pytestmark = pytest.mark.memory_ledger

__all__ = ["stripe_api"]


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recharge, "WAIT_SECONDS", 0.001)


def test_a_charge_whose_answer_was_lost_is_found_by_its_recharge_id_not_charged_again(
    service, stripe_api: FakeStripeHttp
):
    """The charge landed at Stripe, its answer never came back (no PaymentIntent id recorded) and no webhook
    came; the lease runs out, Stripe forgets the key: the retry finds the PaymentIntent by its recharge id."""
    ready(stripe_api)
    stripe_api.card = "lost_answer"
    assert send("k1")[0] == 402  # the recharge's outcome is unknown: the send is refused, nothing held
    assert len(stripe_api.intents) == 1 and balance()["purchased"]["AU"] == 0
    order = runtime.container().ledger.get_order("rch_acct-1_AU_1")
    assert order is not None and order.payment_intent is None
    service.advance(seconds=150)  # past the claim's lease
    stripe_api.forget_idempotency_keys()
    stripe_api.card = "succeed"
    status, answer = send("k2")
    assert status == 202 and answer["status"] == "sent", answer
    assert len(stripe_api.intents) == 1  # no second PaymentIntent: the first one was settled
    assert balance()["purchased"]["AU"] == 99 and audit() == []


def test_a_charge_answered_processing_is_retrieved_by_its_stored_id_not_charged_again(
    service, stripe_api: FakeStripeHttp
):
    """The first answer named the PaymentIntent (still processing): its id is kept on the recharge's order,
    and the retry after the lease (Stripe having forgotten the key) retrieves it, now succeeded."""
    ready(stripe_api)
    stripe_api.card = "processing"
    send("k1")
    [intent] = stripe_api.intents
    order = runtime.container().ledger.get_order("rch_acct-1_AU_1")
    assert order is not None and order.payment_intent == intent
    service.advance(seconds=150)
    stripe_api.forget_idempotency_keys()
    stripe_api.card = "succeed"
    status, answer = send("k2")
    assert status == 202 and answer["status"] == "sent", answer
    assert stripe_api.intents == [intent]
    assert [r["path"] for r in stripe_api.requests if r["method"] == "get"][
        -1
    ] == f"/v1/payment_intents/{intent}"
    assert balance()["purchased"]["AU"] == 99 and audit() == []
