"""docs/events.md against the code: every event the service writes is documented, and each documented example
has exactly the fields, and the types, of the event the code writes in a scenario that causes it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from smscredits.adapters.memory_ledger import InMemoryLedger
from smscredits.domain import auto_recharge as AR
from smscredits.domain import batches as B
from smscredits.domain import events as E
from smscredits.domain import ledger as L
from smscredits.domain.orders import Paid
from tests.batches_support import Run, StandInTwilio, au
from tests.conftest import Clock, new_account
from tests.functions import ROOT
from tests.ledgers import ACCT, buy, hold_request, refresh

DOC = ROOT / "docs" / "events.md"


def scenario() -> dict[str, dict[str, Any]]:
    """One account's life through every movement that writes an event: the first detail of each type."""
    clock = Clock(datetime(2026, 11, 10, 12, 0, tzinfo=UTC))
    ledger = InMemoryLedger(clock=clock)
    ledger.create_account(new_account(ACCT), reference={"actor": "test"})
    buy(ledger)  # pack.purchased
    sent, _ = ledger.hold(ACCT, hold_request("msg_1", segments=2))
    ledger.post(sent, {"sid": "SM1", "provider_status": "queued", "num_segments": 3})  # + segments.mismatch
    refused, _ = ledger.hold(ACCT, hold_request("msg_2"))
    ledger.void(refused, {"result": "rejected", "error_code": 21211})  # message.failed
    ledger.adjust(ACCT, L.INCLUDED, -48, op_id="drain", actor="support", reason="drain")
    ledger.adjust(ACCT, L.purchased_pool("AU"), -100, op_id="drain-au", actor="support", reason="drain")

    def on(auto: AR.AutoRecharge) -> AR.AutoRecharge:
        auto = AR.with_customer(auto, "cus_1", "pm_1")
        return AR.with_settings(auto, enabled=True, regions={"AU": AR.RegionRule(1)}, monthly_cap_cents=5000)

    ledger.update_auto_recharge(ACCT, on, op_id="settings")
    claim = ledger.claim_recharge(ACCT, "AU", 1)
    order = ledger.get_order(claim.recharge_id)
    assert order is not None
    ledger.settle_recharge(Paid(order, "pi_rch"), source="charge")  # recharge.succeeded
    ledger.adjust(ACCT, L.purchased_pool("AU"), -100, op_id="drain-again", actor="support", reason="drain")
    second = ledger.claim_recharge(ACCT, "AU", 1)
    ledger.record_recharge_failure(
        ACCT, "AU", second.recharge_id, code=AR.DISABLED_AUTHENTICATION, message=None
    )
    clock.advance(days=30)
    refresh(ledger, clock)  # allowance.refreshed
    first: dict[str, dict[str, Any]] = {}
    for kind, detail in ledger.outbox():
        first.setdefault(kind, detail)
    return {
        **first,
        E.BATCH_COMPLETED: batch_completed(clock),
        E.MIGRATION_REQUESTED: migration_requested(clock),
    }


def migration_requested(clock: Clock) -> dict[str, Any]:
    """A legacy account's owner asking support for the migration: its account.migration_requested."""
    ledger = InMemoryLedger(clock=clock)
    ledger.create_account(new_account("acct-legacy", model="legacy", now=clock.now), reference={})
    ledger.request_migration("acct-legacy", requested_by="user-acct-legacy")
    [detail] = [detail for kind, detail in ledger.outbox() if kind == E.MIGRATION_REQUESTED]
    return detail


def batch_completed(clock: Clock) -> dict[str, Any]:
    """A two-message batch, one delivered and one failed, settled to its end: its batch.completed."""
    run = Run("memory", clock)
    run.ledger.create_account(new_account("acct-b", plan="starter", now=clock.now), reference={})
    created = run.create("acct-b", "k1", [B.Entry(au(1), "hello"), B.Entry(au(2), "hello")])
    twilio = StandInTwilio()
    run.drain(twilio, only=lambda job: job["kind"] == "slice")
    run.deliver(twilio, lambda to: "delivered" if to == au(1) else "failed")
    run.settle("acct-b", created["batch_id"])
    [completed] = run.completed()
    return completed


def documented() -> dict[str, dict[str, Any]]:
    """Each `## <type>` section's JSON example."""
    text = DOC.read_text()
    sections = re.split(r"^## `([a-z_.]+)`\s*$", text, flags=re.MULTILINE)
    examples = {}
    for name, body in zip(sections[1::2], sections[2::2], strict=True):
        block = re.search(r"```json\n(.*?)\n```", body, flags=re.DOTALL)
        if block:
            examples[name] = json.loads(block.group(1))
    return examples


def kind_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def test_every_event_type_is_documented_with_an_example():
    sections = set(re.findall(r"^## `([a-z_.]+)`", DOC.read_text(), flags=re.MULTILINE))
    assert sections == set(E.EVENT_TYPES)
    assert set(documented()) == set(E.EVENT_TYPES)


def test_each_example_has_the_fields_and_types_the_code_writes():
    emitted = scenario()
    examples = documented()
    assert set(emitted) == set(examples)
    for kind, example in examples.items():
        detail = emitted[kind]
        assert list(example["detail"]) == list(detail), kind  # the same fields, in the same order
        for field, value in example["detail"].items():
            assert kind_of(value) in (kind_of(detail[field]), "null"), (kind, field)
        assert example["detail-type"] == kind and example["source"] == E.SOURCE
