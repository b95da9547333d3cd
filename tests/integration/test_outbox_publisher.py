"""The outbox publisher on AWS (functions/outbox_publisher): each stream record of an outbox item becomes one
EventBridge event with the documented shape; a record EventBridge refuses is reported alone for retry."""

from __future__ import annotations

import json
from typing import Any

from smscredits.adapters.dynamo.codec import outbox_item
from smscredits.adapters.dynamo.values import to_item
from smscredits.adapters.events import EventBridgePublisher
from smscredits.domain import events as E
from tests.functions import Context, load_function


class FakeEvents:
    """EventBridge's PutEvents: refuses the detail types in `refused`, records the rest."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.put: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        (entry,) = Entries
        if entry["DetailType"] in self.refused:
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]}
        self.put.append(entry)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}


def stream_record(sequence: str, event: E.Event) -> dict[str, Any]:
    item = outbox_item("acct-1", f"op-{sequence}", 0, event, "2026-11-10T12:00:00.000Z")
    return {
        "eventID": sequence,
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {"NewImage": to_item(item), "SequenceNumber": sequence, "StreamViewType": "NEW_IMAGE"},
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/CreditsTable/stream/2026",
    }


def test_each_record_is_one_event_and_a_refused_one_is_retried_alone(monkeypatch):
    app = load_function("outbox_publisher")
    events = FakeEvents({E.CREDITS_LOW})
    monkeypatch.setattr(app, "publisher", lambda: EventBridgePublisher("sms-credits-dev", client=events))
    records = [
        stream_record("100", E.event(E.ALLOWANCE_REFRESHED, plan="starter", allowance=50)),
        stream_record("101", E.event(E.CREDITS_LOW, region="AU", spendable=12, threshold=20)),
    ]
    answer = app.lambda_handler({"Records": records}, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "101"}]}
    (entry,) = events.put
    assert (entry["EventBusName"], entry["Source"], entry["DetailType"]) == (
        "sms-credits-dev",
        "sms-credits",
        E.ALLOWANCE_REFRESHED,
    )
    detail = json.loads(entry["Detail"])
    assert detail["event_id"] == E.event_id("acct-1", "op-100", 0, E.ALLOWANCE_REFRESHED)
    assert (detail["plan"], detail["allowance"]) == ("starter", 50)
