"""What a write is billed by is the account state it is pinned to, never another instance's older cached view
of it (two Lambda environments = two ledgers on one table; issue 16)."""

from __future__ import annotations

from smscredits import runtime
from smscredits.adapters.dynamo import codec
from smscredits.domain import ledger as L
from smscredits.domain.errors import InvalidRequest
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.services import sending
from tests.conftest import TABLE
from tests.integration.conftest import create, service_ledger

AU = "+61491570110"
# 100 characters with a curly apostrophe: UCS-2 (2 segments) as typed, GSM-7 (1 segment) once smart encoding
# replaces it with a straight one.
CURLY = "It’s " + "x" * 95


def test_a_send_counted_with_a_stale_smart_encoding_is_billed_as_the_pinned_account_says(service, dynamodb):
    create()  # smart encoding off
    here, there = service_ledger(dynamodb, service), service_ledger(dynamodb, service)
    assert here.known_account("acct-1").smart_encoding is False  # this instance's cached view
    # Another instance switches smart encoding on (as support's account settings do) and writes the balance.
    dynamodb.update_item(
        TableName=TABLE,
        Key=codec.account_key("acct-1"),
        UpdateExpression="SET smart_encoding = :on",
        ExpressionAttributeValues={":on": {"BOOL": True}},
    )
    there.adjust("acct-1", L.INCLUDED, -1, op_id="adjust:other-instance", actor="support", reason="test")
    assert here.known_account("acct-1").smart_encoding is False  # still the older view here
    command = sending.SendCommand("acct-1", IdempotencyKey("k1"), AU, CURLY, "https://api.example.com")
    result = sending.send_message(here, runtime.container().sender, None, command)
    assert (result.hold.credits, result.hold.message["encoding"], result.hold.message["segments"]) == (
        1,
        "GSM-7",
        1,
    )
    assert result.hold.message["body"].startswith("It's")  # what is sent is what was counted


def test_an_adjustment_to_the_legacy_pool_after_another_instance_migrated_the_account_is_refused(
    service, dynamodb
):
    create("acct-l", created_at="2025-01-01T00:00:00Z")
    here, there = service_ledger(dynamodb, service), service_ledger(dynamodb, service)
    assert here.known_account("acct-l").credit_model == "legacy"
    there.migrate("acct-l", ratio=(1, 1), actor="support", op_id="migrate:elsewhere")
    try:
        here.adjust("acct-l", L.LEGACY, 5, op_id="adjust:late", actor="support", reason="old view")
    except InvalidRequest as refused:
        assert refused.details == {"pool": "legacy", "model": "segment"}
    else:
        raise AssertionError("a legacy pool was written on a migrated account")
    assert L.LEGACY not in {p for p, n in there.get_account("acct-l").pools.items() if n}
