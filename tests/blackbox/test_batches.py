"""A batch through local mode: the batch API reserves and queues, the worker drains moto's SQS through the
worker pool at the paced rate, the Twilio stand-in calls back, and a settlement completes it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.blackbox.conftest import Api, error_of, wait_for

pytestmark = pytest.mark.blackbox


def test_a_batch_is_sent_settled_and_listed(new_account: Callable[..., Api]) -> None:
    api = new_account()
    before = api.balance()
    entries = [
        {"to": f"+61412{i:06d}", "body": "Thanks for visiting! Reply STOP to opt out.", "ref": f"r{i}"}
        for i in range(25)
    ]
    entries.append({"to": "+61412000003", "body": "again"})  # a duplicate of index 3
    quote = api.post("/v1/batches/quote", {"messages": entries})
    assert quote.status_code == 200, quote.text
    assert quote.json()["valid"] == 25 and quote.json()["duplicates"] == [{"index": 25, "first_index": 3}]

    created = api.post("/v1/batches", {"messages": entries}, key=uuid.uuid4().hex)
    assert created.status_code == 202, created.text
    batch = created.json()
    assert batch["credits_held"] == 25 and api.balance()["held"] == 25

    def completed() -> dict[str, object] | None:
        shown = api.get(f"/v1/batches/{batch['batch_id']}").json()
        return shown if shown["status"] == "completed" else None

    shown = wait_for(completed, timeout=60, every=0.5)
    assert shown, api.get(f"/v1/batches/{batch['batch_id']}").text
    assert shown["credits"] == {"held": 25, "posted": 25, "returned": 0}
    after = api.balance()
    assert after["held"] == 0
    assert before["included"]["available"] - after["included"]["available"] == 25
    page = api.get(f"/v1/batches/{batch['batch_id']}/messages", params={"status": "delivered", "limit": "10"})
    assert page.status_code == 200 and len(page.json()["messages"]) == 10

    missing = api.get("/v1/batches/bat_none")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
