"""Random sequences of credit movements against the DynamoDB ledger (moto) and a plain in-memory model.

Two DynamoLedger instances share the table and are picked at random per step, so one of them often acts on
a stale cached balance. After every step the stored pools, held credits and hold states must equal the
model's, no pool may be negative, and the ledger check must find nothing.

Speed: one moto mock for the module, the table dropped and recreated for every example; after each step
only the ledger entries written since the last step and the holds the step touched are read. The end of
every example reads the whole partition once and checks it against that view (so an entry that changed
after it was written, or a stray hold, is still caught). Moto's response serialiser makes a full
partition read per step cost more than the rest of the test together.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from moto import mock_aws

from local.moto_dynamo import create_tables
from smscredits.adapters.dynamo.codec import account_from_item, account_pk, hold_from_item, record_from_item
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.values import from_item, to_value
from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold, LedgerRecord
from smscredits.domain.audit import check_account
from smscredits.domain.catalog import PLANS
from smscredits.domain.errors import HoldEnded, InsufficientCredits, InvalidRequest
from smscredits.domain.movements import HoldRequest
from smscredits.domain.orders import Paid
from smscredits.domain.periods import period_containing, period_start_at
from tests.conftest import TABLE, Clock, new_account
from tests.ledgers import pack_order

pytestmark = pytest.mark.slow  # about a minute: make test runs it, make pr does not

ACCT = "acct-s"
ANCHOR = date(2026, 1, 31)  # a month-end anchor: periods of 28 to 31 days
START = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
POOLS = (L.INCLUDED, "purchased:AU", "purchased:US")
REGIONS = ("AU", "US")


_MOCK = mock_aws()
_CLIENT: Any = None


def setup_module() -> None:
    global _CLIENT
    _MOCK.start()
    _CLIENT = boto3.client("dynamodb", region_name="us-east-1")


def teardown_module() -> None:
    _MOCK.stop()


def fresh_table() -> Any:
    if TABLE in _CLIENT.list_tables()["TableNames"]:
        _CLIENT.delete_table(TableName=TABLE)
    create_tables(_CLIENT)
    return _CLIENT


class ModelHold:
    def __init__(self, credits: int, funding: list[tuple[str, int]], period: date) -> None:
        self.status = "pending"
        self.credits = credits
        self.funding = funding
        self.period = period


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        client = self.client = fresh_table()
        self.clock = Clock(START)
        self.stores = [DynamoLedger(TABLE, client=client, clock=self.clock) for _ in range(2)]
        account = new_account(ACCT, anchor=ANCHOR, now=START)
        self.stores[0].create_account(account, reference={})
        self.ids = itertools.count()
        # The model.
        self.pools: dict[str, int] = {L.INCLUDED: PLANS["starter"]}
        self.held = 0
        self.period = account.period_start
        self.refreshed = False
        self.holds: dict[str, Hold] = {}  # as the ledger returned them when it held them
        self.model_holds: dict[str, ModelHold] = {}
        self.grants: set[str] = set()
        self.adjustments: dict[str, tuple[str, int, Mapping[str, Any]]] = {}

        self.entries: list[LedgerRecord] = []  # read so far, oldest first
        self.version_seen = 0  # the balance version up to which entries have been read
        self.stored_holds: dict[str, Hold] = {}  # as last read from the table
        self.touched: set[str] = set()  # hold ids the current step may have written

    def teardown(self) -> None:
        """One read of the whole partition (the fields the check uses) equals the view built step by step:
        no entry changed after it was read, and no entry or hold was written that the steps did not see."""
        names = {"#p": "pool", "#a": "amount", "#b": "balance_after", "#s": "status", "#c": "credits"}
        kwargs: dict[str, Any] = {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": to_value(account_pk(ACCT))},
            "ProjectionExpression": "sk, entry_id, " + ", ".join(names),
            "ExpressionAttributeNames": names,
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self.client.query(**kwargs)
            items.extend(from_item(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        ledger = {
            i["entry_id"]: (i["pool"], i["amount"], i["balance_after"]) for i in items if "entry_id" in i
        }
        assert ledger == {e.entry_id: (e.pool, e.amount, e.balance_after) for e in self.entries}
        assert len(ledger) == sum(1 for i in items if i["sk"].startswith("LEDGER#"))
        holds = {
            i["sk"].removeprefix("HOLD#"): (i["status"], i["credits"])
            for i in items
            if i["sk"][:5] == "HOLD#"
        }
        assert holds == {h.message_id: (h.status, h.credits) for h in self.stored_holds.values()}

    def store(self, which: int) -> DynamoLedger:
        self.clock.advance(minutes=1)
        return self.stores[which]

    # ---- rules -------------------------------------------------------------------------------------

    @rule(
        which=st.integers(0, 1),
        region=st.sampled_from(REGIONS),
        packs=st.integers(1, 2),
        order=st.integers(0, 12),
    )
    def purchase(self, which: int, region: str, packs: int, order: int) -> None:
        order_id = f"order-{order}"  # a small id space: a repeat pays the recorded order again, a duplicate
        ledger = self.store(which)
        recorded = ledger.open_order(pack_order(ACCT, region=region, packs=packs, order_id=order_id))
        applied = ledger.grant_purchase(Paid(recorded, f"pi-{order}"), source="test")
        assert applied == (order_id not in self.grants)
        if applied:
            self.grants.add(order_id)
            pool = L.purchased_pool(recorded.region)
            self.pools[pool] = self.pools.get(pool, 0) + recorded.credits

    @rule(
        which=st.integers(0, 1),
        segments=st.integers(1, 6),
        region=st.sampled_from(REGIONS),
        replay=st.integers(0, 5),
        data=st.data(),
    )
    def hold(self, which: int, segments: int, region: str, replay: int, data: st.DataObject) -> None:
        if replay == 0 and self.holds:
            hold_id = data.draw(st.sampled_from(sorted(self.holds)), label="replayed hold")
            original = self.holds[hold_id]
            draft = HoldRequest(hold_id, segments, region, original.request_hash, dict(original.message))
            self.touched.add(hold_id)
            hold, created = self.store(which).hold(ACCT, draft)
            assert not created
            assert (hold.message_id, hold.credits, hold.funding) == (
                hold_id,
                original.credits,
                original.funding,
            )
            assert hold.status == self.model_holds[hold_id].status
            return
        hold_id = f"m{next(self.ids)}"
        draft = HoldRequest(
            hold_id, segments, region, f"hash-{hold_id}", {"region": region, "segments": segments}
        )
        funding = self.model_funding(region, segments)
        self.touched.add(hold_id)
        if funding is None:
            with pytest.raises(InsufficientCredits):
                self.store(which).hold(ACCT, draft)
            return
        hold, created = self.store(which).hold(ACCT, draft)
        assert created
        assert [(f.pool, f.credits) for f in hold.funding] == funding
        self.holds[hold_id] = hold
        self.model_holds[hold_id] = ModelHold(segments, funding, self.period)
        for pool, credits in funding:
            self.pools[pool] -= credits
        self.held += segments

    @rule(which=st.integers(0, 1), ending=st.sampled_from(["posted", "voided"]), data=st.data())
    def end_hold(self, which: int, ending: str, data: st.DataObject) -> None:
        if not self.holds:
            return
        hold_id = data.draw(st.sampled_from(sorted(self.holds)), label="hold")
        model = self.model_holds[hold_id]
        self.touched.add(hold_id)
        store = self.store(which)
        action = store.post if ending == "posted" else store.void
        if model.status not in ("pending", ending):
            with pytest.raises(HoldEnded):
                action(self.holds[hold_id])
            return
        ended = action(self.holds[hold_id])
        assert ended.status == ending
        if model.status == ending:
            return  # a repeat: nothing moves
        model.status = ending
        self.held -= model.credits
        if ending == "voided":
            for pool, credits in model.funding:
                if pool == L.INCLUDED and model.period != self.period:
                    continue  # returned, then lapsed: it belonged to a period that has ended
                self.pools[pool] += credits

    @rule(
        which=st.integers(0, 1),
        pool=st.sampled_from(POOLS),
        credits=st.integers(-40, 40).filter(bool),
        replay=st.integers(0, 4),
        data=st.data(),
    )
    def adjust(self, which: int, pool: str, credits: int, replay: int, data: st.DataObject) -> None:
        if replay == 0 and self.adjustments:
            op_id = data.draw(st.sampled_from(sorted(self.adjustments)), label="replayed adjustment")
            pool, credits, outcome = self.adjustments[op_id]
            _, again = self.store(which).adjust(ACCT, pool, credits, op_id=op_id, actor="s", reason="r")
            assert again == outcome
            return
        op_id = f"adj-{next(self.ids)}"
        if self.pools.get(pool, 0) + credits < 0:
            with pytest.raises(InvalidRequest):
                self.store(which).adjust(ACCT, pool, credits, op_id=op_id, actor="s", reason="r")
            return
        _, outcome = self.store(which).adjust(ACCT, pool, credits, op_id=op_id, actor="s", reason="r")
        self.pools[pool] = self.pools.get(pool, 0) + credits
        assert outcome == {"pool": pool, "credits": credits, "balance_after": self.pools[pool]}
        self.adjustments[op_id] = (pool, credits, outcome)

    @rule(which=st.integers(0, 1), repeat=st.integers(0, 3))
    def refresh(self, which: int, repeat: int) -> None:
        if repeat == 0:
            _, next_start = period_containing(ANCHOR, self.period)
            _, applied = self.store(which).refresh_allowance(
                ACCT, period_start=self.period, next_refresh_at=period_start_at(next_start)
            )
            assert not applied
            return
        _, new_period = period_containing(ANCHOR, self.period)
        _, next_start = period_containing(ANCHOR, new_period)
        self.clock.now = period_start_at(new_period) + timedelta(hours=1)
        after, applied = self.store(which).refresh_allowance(
            ACCT, period_start=new_period, next_refresh_at=period_start_at(next_start)
        )
        assert applied
        assert after.period_start == new_period
        self.period = new_period
        self.pools[L.INCLUDED] = PLANS["starter"]

    # ---- the model --------------------------------------------------------------------------------

    def model_funding(self, region: str, credits: int) -> list[tuple[str, int]] | None:
        included = min(self.pools.get(L.INCLUDED, 0), credits)
        regional = credits - included
        if self.pools.get(f"purchased:{region}", 0) < regional:
            return None
        funding = [(L.INCLUDED, included)] if included else []
        return funding + ([(f"purchased:{region}", regional)] if regional else [])

    def read(self) -> tuple[Account, list[LedgerRecord], list[Hold]]:
        """The partition as DynamoStatements.partition reads it, but only the ledger entries not yet seen.

        Entries are written only with a new balance version (their key carries it), so an unchanged
        version means no new entries; the full read at teardown would catch one written otherwise."""
        pk = to_value(account_pk(ACCT))
        balance = self.client.get_item(
            TableName=TABLE, Key={"pk": pk, "sk": to_value("ACCOUNT")}, ConsistentRead=True
        )
        account = account_from_item(from_item(balance["Item"]))
        if account.version != self.version_seen:
            new = self.client.query(
                TableName=TABLE,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :after AND :end",
                ExpressionAttributeValues={
                    ":pk": pk,
                    ":after": to_value(f"LEDGER#{self.version_seen:012d}#99"),
                    ":end": to_value("LEDGER#~"),
                },
                ConsistentRead=True,
            )
            assert "LastEvaluatedKey" not in new
            self.entries.extend(record_from_item(from_item(item)) for item in new["Items"])
            self.version_seen = account.version
        for hold_id in sorted(self.touched):
            found = self.client.get_item(
                TableName=TABLE, Key={"pk": pk, "sk": to_value(f"HOLD#{hold_id}")}, ConsistentRead=True
            )
            if "Item" in found:
                self.stored_holds[hold_id] = hold_from_item(from_item(found["Item"]))
        self.touched.clear()
        return account, list(self.entries), list(self.stored_holds.values())

    @invariant()
    def the_table_matches_the_model(self) -> None:
        account, entries, holds = self.read()
        assert check_account(account, entries, holds) == []
        assert all(value >= 0 for value in account.pools.values()), account.pools
        assert {p: v for p, v in account.pools.items() if v} == {p: v for p, v in self.pools.items() if v}
        assert account.held == self.held
        assert account.period_start == self.period
        assert {h.message_id: h.status for h in holds} == {i: m.status for i, m in self.model_holds.items()}


TestLedgerStateful = LedgerMachine.TestCase
TestLedgerStateful.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
