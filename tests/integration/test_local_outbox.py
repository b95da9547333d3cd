"""Local mode's outbox publisher: what the movements wrote is published once each, in the order written, and
a poll that reads an event again (its overlap window) does not publish it twice."""

from __future__ import annotations

from local.outbox import LOCAL_BUS, OutboxPoller
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.domain import ledger as L
from tests.conftest import TABLE, Clock, new_account
from tests.ledgers import ACCT


def test_each_outbox_event_is_published_once_as_an_eventbridge_entry(dynamodb, clock: Clock):
    ledger = DynamoLedger(TABLE, client=dynamodb, clock=clock)
    ledger.create_account(new_account(ACCT), reference={"actor": "test"})
    poller = OutboxPoller(dynamodb, TABLE)
    assert poller.poll() == 0
    ledger.adjust(ACCT, L.INCLUDED, -40, op_id="low", actor="support", reason="test")  # 10 left
    assert poller.poll() == 1
    clock.advance(seconds=5)
    ledger.adjust(ACCT, L.INCLUDED, -10, op_id="empty", actor="support", reason="test")  # 0 left
    assert poller.poll() == 1
    assert poller.poll() == 0  # the overlap reads both again: nothing new
    published = poller.published()
    assert [entry["DetailType"] for entry in published] == ["credits.low", "credits.depleted"]
    assert {entry["Source"] for entry in published} == {"sms-credits"}
    assert {entry["EventBusName"] for entry in published} == {LOCAL_BUS}
    assert [entry["Detail"]["spendable"] for entry in published] == [10, 0]
    assert len({entry["Detail"]["event_id"] for entry in published}) == 2
