"""Retention (docs/security.md): which items of the table expire by TTL, and when. An ended message (its
body and full number) expires the retention period after it ended, an outbox event three days after it was
written; the balance, the ledger entries, the guards, orders and payments never expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from smscredits.adapters.dynamo.codec import OUTBOX_RETENTION_SECONDS, TTL_ATTRIBUTE
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.values import from_item
from smscredits.domain import ledger as L
from tests.conftest import TABLE, Clock, new_account
from tests.ledgers import ACCT, buy, hold_request

START = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
RETENTION_DAYS = 7


def items_by_type(dynamodb: Any) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for item in dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]:
        plain = from_item(item)
        found.setdefault(str(plain["type"]), []).append(plain)
    return found


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def test_each_kind_of_item_gets_the_expiry_it_should(dynamodb):
    clock = Clock(START)
    ledger = DynamoLedger(
        TABLE, client=dynamodb, clock=clock, message_retention_seconds=RETENTION_DAYS * 86_400
    )
    ledger.create_account(new_account(ACCT), reference={"actor": "test"})
    buy(ledger)
    ledger.adjust(ACCT, L.INCLUDED, -1, op_id="adj", actor="support", reason="test")
    posted, _ = ledger.hold(ACCT, hold_request("m-posted"))
    voided, _ = ledger.hold(ACCT, hold_request("m-voided"))
    ledger.hold(ACCT, hold_request("m-pending"))
    clock.advance(minutes=5)
    ended_at = clock.now
    ledger.post(posted, {"sid": "SM1"})
    ledger.void(voided, {"result": "rejected"})
    stored = items_by_type(dynamodb)

    holds = {item["hold_id"]: item.get(TTL_ATTRIBUTE) for item in stored["hold"]}
    expires = epoch(ended_at + timedelta(days=RETENTION_DAYS))
    assert holds == {"m-posted": expires, "m-voided": expires, "m-pending": None}
    assert {item.get(TTL_ATTRIBUTE) for item in stored["event"]} == {
        epoch(ended_at) + OUTBOX_RETENTION_SECONDS,  # message.sent and message.failed
        epoch(START) + OUTBOX_RETENTION_SECONDS,  # pack.purchased
    }
    for kind in ("account", "ledger", "operation", "order", "payment"):
        assert stored[kind], kind
        assert all(TTL_ATTRIBUTE not in item for item in stored[kind]), kind


def test_a_refund_keeps_the_expiry_the_message_got_when_it_ended(dynamodb):
    clock = Clock(START)
    ledger = DynamoLedger(TABLE, client=dynamodb, clock=clock)
    ledger.create_account(new_account(ACCT), reference={"actor": "test"})
    hold, _ = ledger.hold(ACCT, hold_request("m-1"))
    posted = ledger.post(hold, {"sid": "SM1"})
    clock.advance(hours=2)
    ledger.refund(posted, {"sid": "SM1", "provider_status": "failed"})
    (item,) = items_by_type(dynamodb)["hold"]
    assert item["status"] == "refunded"
    assert item[TTL_ATTRIBUTE] == epoch(START + timedelta(days=30))
