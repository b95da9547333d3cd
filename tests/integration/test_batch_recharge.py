"""A short batch with auto-recharge on (docs/product.md §8b): each short region is recharged once, within the
monthly cap, before the one reservation; what is still short is a 402 with the shortfall and nothing reserved."""

from __future__ import annotations

from typing import Any

import pytest

from smscredits import runtime
from smscredits.adapters.memory_batches import InMemoryBatchMessages, InMemoryBatchQueue
from tests.functions import call, user
from tests.integration.conftest import create
from tests.integration.stripe_support import (
    FakeStripeHttp,
    adjust,
    balance,
    checkout,
    deliver,
    get_auto_recharge,
    put_auto_recharge,
    stripe_api,
)
from tests.integration.test_stripe_recharge import audit

# Use cases: they run on the in-memory ledger (tests/contract holds it to DynamoDB's rules).
pytestmark = pytest.mark.memory_ledger

__all__ = ["stripe_api"]
PACK_CENTS = 620  # one AU pack of 100 credits


@pytest.fixture
def queue(service: Any, stripe_api: FakeStripeHttp) -> InMemoryBatchQueue:
    jobs = InMemoryBatchQueue()
    runtime.use(runtime.container().replace(batch_messages=InMemoryBatchMessages(), batch_queue=jobs))
    return jobs


def ready(stripe_api: FakeStripeHttp, *, cap: int, left: int) -> None:
    """Auto-recharge on for AU (one pack a recharge, this monthly cap), a card on file, `left` AU credits."""
    create()
    status, answer = put_auto_recharge(
        {"enabled": True, "regions": {"AU": {"packs": 1, "threshold": 0}}, "monthly_cap_cents": cap}
    )
    assert status == 200, answer
    deliver(checkout(stripe_api).session_event())
    assert get_auto_recharge()["card_on_file"] is True
    adjust("included", -50, key="drain-included")
    adjust("purchased:AU", left - 200, key="drain-au")


def post_batch(count: int, key: str = "b1") -> tuple[int, Any]:
    entries = [{"to": f"+61412{i:06d}", "body": "See you tomorrow"} for i in range(count)]
    return call(
        "batch_api",
        "batch_post_batch",
        body={"messages": entries},
        headers={"idempotency-key": key},
        claims=user(),
        path="/v1/batches",
    )


def test_a_batch_the_pools_cannot_pay_recharges_what_is_short_and_then_reserves(
    queue: InMemoryBatchQueue, stripe_api: FakeStripeHttp
) -> None:
    ready(stripe_api, cap=5000, left=30)  # 30 AU credits; the batch needs 50
    status, created = post_batch(50)
    assert status == 202, created
    assert created["accepted"] == 50 and created["credits_held"] == 50
    assert [c["params"]["amount"] for c in stripe_api.charges] == [str(PACK_CENTS)]
    assert balance()["purchased"]["AU"] == 30 + 100 - 50
    assert runtime.container().ledger.get_account("acct-1").held == 50
    jobs = len(queue.jobs)
    assert post_batch(50) == (
        status,
        created,
    )  # the same key: the same batch, nothing charged or queued again
    assert len(stripe_api.charges) == 1 and len(queue.jobs) == jobs
    assert get_auto_recharge()["spent_this_period_cents"] == PACK_CENTS
    assert audit() == []


def test_a_batch_still_short_at_the_cap_is_a_402_with_the_shortfall_and_reserves_nothing(
    queue: InMemoryBatchQueue, stripe_api: FakeStripeHttp
) -> None:
    ready(stripe_api, cap=1000, left=0)  # room in the cap for one pack, not two
    status, answer = post_batch(150)
    assert status == 402 and answer["error"]["code"] == "insufficient_credits"
    assert answer["error"]["details"]["shortfall"] == {"AU": 50}  # 150 needed, one pack of 100 bought
    assert len(stripe_api.charges) == 1
    assert balance()["purchased"]["AU"] == 100  # the pack stays bought; nothing reserved
    assert runtime.container().ledger.get_account("acct-1").held == 0 and queue.jobs == []
    for _ in range(2):  # the client tries again: the cap allows no second pack, nothing is charged
        status, answer = post_batch(150)
        assert status == 402 and answer["error"]["details"]["shortfall"] == {"AU": 50}
    assert len(stripe_api.charges) == 1
    assert get_auto_recharge()["spent_this_period_cents"] == PACK_CENTS
    assert runtime.container().ledger.get_account("acct-1").held == 0 and queue.jobs == []
    assert audit() == []


def test_a_batch_short_with_the_cap_already_reached_charges_nothing(
    queue: InMemoryBatchQueue, stripe_api: FakeStripeHttp
) -> None:
    ready(stripe_api, cap=PACK_CENTS - 1, left=10)
    status, answer = post_batch(40)
    assert status == 402 and answer["error"]["details"]["shortfall"] == {"AU": 30}
    assert stripe_api.charges == [] and balance()["purchased"]["AU"] == 10
    assert runtime.container().ledger.get_account("acct-1").held == 0 and queue.jobs == []
