"""Segment reconciliation (docs/product.md §8): Twilio's num_segments from its answer to the create is recorded on
the message, shown next to ours, and a difference is a segments.mismatch event (written with the post) and a
metric. We bill what we quoted."""

from __future__ import annotations

from typing import Any

from smscredits import runtime
from tests import outbox
from tests.conftest import Clock
from tests.functions import call, user
from tests.integration.conftest import FakeTwilioHttp
from tests.reliability import support as S


def message(message_id: str) -> dict[str, Any]:
    status, answer = call(
        "account_api",
        "account_get_message",
        path=f"/v1/messages/{message_id}",
        path_params={"message_id": message_id},
        claims=user("acct-1"),
    )
    assert status == 200, answer
    return dict(answer)


def test_twilio_counting_another_number_of_segments_is_shown_and_emitted(
    service: Clock, twilio: FakeTwilioHttp
):
    assert S.create()[0] == 201
    twilio.num_segments = "2"
    status, sent = S.send("k1")
    assert status == 202 and sent["segments"] == 1 and sent["credits"] == 1
    shown = message(sent["message_id"])
    assert (shown["segments"], shown["provider_segments"], shown["credits"]) == (1, 2, 1)
    mismatches = outbox.published("segments.mismatch")
    assert [(m["message_id"], m["segments"], m["provider_segments"]) for m in mismatches] == [
        (sent["message_id"], 1, 2)
    ]
    assert runtime.container().ledger.get_account("acct-1").pools["included"] == 49  # billed as quoted


def test_the_same_count_is_shown_and_emits_nothing(service: Clock, twilio: FakeTwilioHttp):
    assert S.create()[0] == 201
    status, sent = S.send("k1")
    assert status == 202
    assert message(sent["message_id"])["provider_segments"] == 1
    assert outbox.published("segments.mismatch") == []


def test_a_messaging_services_zero_is_no_count(service: Clock, twilio: FakeTwilioHttp):
    """Twilio answers num_segments "0" for a message sent through a Messaging Service (no sender yet)."""
    assert S.create()[0] == 201
    twilio.num_segments = "0"
    status, sent = S.send("k1")
    assert status == 202
    assert message(sent["message_id"])["provider_segments"] is None
    assert outbox.published("segments.mismatch") == []
