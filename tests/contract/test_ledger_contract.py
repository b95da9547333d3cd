"""The Ledger port's rules, held against both ledgers: in memory and on DynamoDB (moto).

Every test runs twice. `stored()` is every record an implementation holds (the whole table on DynamoDB),
so a refused or duplicate operation can be shown to have written nothing; `other` is a second process's
ledger on the same data (on DynamoDB its warm view of the balance goes stale)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest

from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.outbox import outbox_items
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.adapters.ledger_operations import LedgerOperations
from smscredits.adapters.memory_ledger import InMemoryLedger
from smscredits.domain import auto_recharge as AR
from smscredits.domain import events as E
from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold
from smscredits.domain.account_settings import AccountPatch
from smscredits.domain.audit import check_account
from smscredits.domain.clawbacks import DisputeStage, PaymentMoved, dispute_step, refund_step
from smscredits.domain.errors import (
    AccountExists,
    BillingAnchorInFuture,
    HoldEnded,
    HoldsPending,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidRequest,
    NotLegacy,
)
from smscredits.domain.ledger import Funding
from smscredits.domain.orders import Paid as PaidOrder
from smscredits.domain.orders import Unmatched
from smscredits.domain.subscriptions import Subscription
from smscredits.services.ports import Statements
from tests.conftest import TABLE, Clock, new_account
from tests.ledgers import ACCT, buy, hold_request, nonzero, pack_order, refresh

AU = "purchased:AU"
US = "purchased:US"


# ---- the two implementations -------------------------------------------------------------------------


def scan(client: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": TABLE, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class Backend:
    def __init__(self, kind: str, clock: Clock, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.clock = clock
        if kind == "memory":
            memory = InMemoryLedger(clock=clock)
            self.ledger: LedgerOperations = memory
            self.statements: Statements = memory
            self.other: LedgerOperations = memory
            self.stored: Callable[[], Any] = memory.snapshot
            self.events: Callable[[], list[tuple[str, dict[str, Any]]]] = memory.outbox
        else:
            client = request.getfixturevalue("dynamodb")
            self.ledger = DynamoLedger(TABLE, client=client, clock=clock)
            self.statements = DynamoStatements(TABLE, client=client)
            self.other = DynamoLedger(TABLE, client=client, clock=clock)
            self.stored = lambda: scan(client)
            self.events = lambda: [(i["detail_type"], i["detail"]) for i in outbox_items(client, TABLE)]

    def sound(self, account_id: str = ACCT) -> Account:
        """The account as stored, after checking that its pools, entries and holds agree."""
        account, entries, holds = self.statements.partition(account_id)
        assert check_account(account, entries, holds) == []
        return account


@pytest.fixture(params=["memory", "dynamo"])
def backend(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Backend]:
    chosen = Backend(request.param, clock, request)
    yield chosen
    for account_id in chosen.statements.account_ids():  # whatever a test did, every account stays sound
        chosen.sound(account_id)


@pytest.fixture
def ledger(backend: Backend) -> LedgerOperations:
    return backend.ledger


@pytest.fixture
def account(ledger: LedgerOperations) -> Account:
    """A starter account (50 included credits)."""
    return ledger.create_account(new_account(ACCT), reference={"actor": "support"})


@pytest.fixture
def funded(ledger: LedgerOperations, account: Account) -> Account:
    """50 included + 100 purchased:AU (one AU pack)."""
    assert buy(ledger)
    return ledger.get_account(ACCT)


# ---- accounts -----------------------------------------------------------------------------------------


def test_create_account_grants_the_first_allowance(backend, ledger):
    created = ledger.create_account(new_account(ACCT), reference={"actor": "support"})
    assert nonzero(created.pools) == {L.INCLUDED: 50}
    assert created.version == 1
    stored = backend.sound()
    assert nonzero(stored.pools) == {L.INCLUDED: 50}
    assert (stored.held, stored.version) == (0, 1)
    _, entries, holds = backend.statements.partition(ACCT)
    assert [(e.kind, e.pool, e.amount, e.balance_after) for e in entries] == [("grant", L.INCLUDED, 50, 50)]
    assert entries[0].reference == {"actor": "support"}
    assert holds == []


def test_create_legacy_account_grants_into_the_legacy_pool(backend, ledger):
    ledger.create_account(new_account("acct-l", model="legacy"), reference={})
    assert nonzero(backend.sound("acct-l").pools) == {L.LEGACY: 50}


def test_second_create_is_refused_and_writes_nothing(backend, ledger, account):
    before = backend.stored()
    with pytest.raises(AccountExists):
        ledger.create_account(new_account(ACCT, plan="growth"), reference={})
    assert backend.stored() == before


# ---- purchases ------------------------------------------------------------------------------------------


def test_a_purchase_is_granted_once_per_order(backend, ledger, account):
    assert buy(ledger)
    assert nonzero(ledger.get_account(ACCT).pools) == {L.INCLUDED: 50, AU: 100}
    before = backend.stored()

    assert not buy(ledger)  # the same order paid by the same PaymentIntent again

    assert backend.stored() == before
    assert nonzero(backend.sound().pools) == {L.INCLUDED: 50, AU: 100}
    grants = [e for e in backend.statements.partition(ACCT)[1] if e.kind == "purchase"]
    assert len(grants) == 1


def test_a_purchase_keeps_its_receipt_on_the_payment_and_its_ledger_entry(backend, ledger, account):
    receipt = "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8x"
    order = ledger.open_order(pack_order())
    assert ledger.grant_purchase(PaidOrder(order, "pi_1", receipt_url=receipt), source="test")
    assert buy(ledger, order_id="cs_2", payment_intent="pi_2")  # granted with no receipt known

    payment = ledger.get_payment("pi_1")
    assert payment is not None and payment.receipt_url == receipt
    without = ledger.get_payment("pi_2")
    assert without is not None and without.receipt_url is None
    grants = {
        e.reference["payment_intent"]: e
        for e in backend.statements.partition(ACCT)[1]
        if e.kind == "purchase"
    }
    assert grants["pi_1"].reference["receipt_url"] == receipt
    assert "receipt_url" not in grants["pi_2"].reference
    assert ledger.get_payment("pi_1") == backend.other.get_payment("pi_1")  # read back from storage


def test_a_duplicate_purchase_from_another_process_is_still_a_duplicate(backend, ledger, funded):
    backend.other.adjust(ACCT, US, 5, op_id="adj-other", actor="support", reason="stale view")
    before = backend.stored()
    assert not buy(ledger)
    assert not buy(backend.other)
    assert nonzero(ledger.get_account(ACCT).pools) == {L.INCLUDED: 50, AU: 100, US: 5}
    assert backend.stored() == before


def test_an_order_paid_by_another_payment_intent_is_unmatched_and_writes_nothing(backend, ledger, funded):
    before = backend.stored()
    with pytest.raises(Unmatched) as caught:
        buy(ledger, payment_intent="pi_other")
    assert caught.value.reason == "paid_by_another_payment_intent"
    assert backend.stored() == before


def test_a_retry_of_the_same_grant_call_reports_it_granted(ledger, account):
    """A call whose write landed and whose answer was lost tries again under the same attempt id: it is its
    own write, not a duplicate (another call is)."""
    assert buy(ledger, attempt_id="attempt-1")
    assert buy(ledger, attempt_id="attempt-1")
    assert not buy(ledger, attempt_id="attempt-2")
    assert nonzero(ledger.get_account(ACCT).pools) == {L.INCLUDED: 50, AU: 100}


def test_concurrent_grants_of_one_order_grant_once(backend, ledger, account):
    ledger.open_order(pack_order())
    order = ledger.get_order("cs_1")
    assert order is not None
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def grant() -> None:
        barrier.wait()
        results.append(ledger.grant_purchase(PaidOrder(order, "pi_1"), source="race"))

    threads = [threading.Thread(target=grant) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert nonzero(backend.sound().pools) == {L.INCLUDED: 50, AU: 100}


# ---- holds ----------------------------------------------------------------------------------------------


def test_hold_takes_included_first(backend, ledger, funded):
    hold, created = ledger.hold(ACCT, hold_request("m1", segments=3))
    assert created
    assert (hold.status, hold.credits, hold.funding) == ("pending", 3, (Funding(L.INCLUDED, 3),))
    stored = backend.sound()
    assert nonzero(stored.pools) == {L.INCLUDED: 47, AU: 100}
    assert stored.held == 3


def test_hold_splits_across_included_and_the_region_pool(backend, ledger, funded):
    hold, created = ledger.hold(ACCT, hold_request("m1", segments=53))
    assert created
    assert hold.funding == (Funding(L.INCLUDED, 50), Funding(AU, 3))
    stored = backend.sound()
    assert nonzero(stored.pools) == {AU: 97}
    assert stored.held == 53
    _, entries, holds = backend.statements.partition(ACCT)
    assert [(e.kind, e.pool, e.amount, e.balance_after) for e in entries if e.kind == "hold"] == [
        ("hold", L.INCLUDED, -50, 0),
        ("hold", AU, -3, 97),
    ]
    assert [(h.message_id, h.status, h.credits) for h in holds] == [("m1", "pending", 53)]


def test_hold_never_uses_another_regions_pool(backend, ledger, funded):
    ledger.hold(ACCT, hold_request("m1", segments=50))  # included is now empty
    before = backend.stored()
    with pytest.raises(InsufficientCredits):
        ledger.hold(ACCT, hold_request("m2", segments=1, region="US"))
    assert backend.stored() == before


def test_legacy_account_holds_from_the_legacy_pool_at_its_flat_rate(backend, ledger):
    ledger.legacy_rates = {"AU": 2, "US": 1, "GB": 3, "NZ": 4}
    ledger.create_account(new_account("acct-l", model="legacy"), reference={})
    hold, created = ledger.hold("acct-l", hold_request("m1", segments=5))
    assert created
    assert (hold.credits, hold.funding) == (2, (Funding(L.LEGACY, 2),))
    stored = backend.sound("acct-l")
    assert nonzero(stored.pools) == {L.LEGACY: 48}
    assert stored.held == 2


def test_insufficient_credits_is_all_or_nothing(backend, ledger, funded):
    before = backend.stored()
    with pytest.raises(InsufficientCredits) as caught:
        ledger.hold(ACCT, hold_request("m1", segments=151))
    assert caught.value.details["needed"] == 151
    assert caught.value.details["pools"] == {L.INCLUDED: 50, AU: 100}
    assert backend.stored() == before
    ledger.hold(ACCT, hold_request("m2", segments=150))  # the exact fit still works afterwards
    stored = backend.sound()
    assert nonzero(stored.pools) == {}
    assert stored.held == 150


def test_a_duplicate_message_id_returns_the_original_hold(backend, ledger, funded):
    first, created = ledger.hold(ACCT, hold_request("m1", segments=3))
    assert created
    before = backend.stored()

    again, created = ledger.hold(ACCT, hold_request("m1", segments=3))

    assert not created
    assert (again.message_id, again.status, again.credits, again.funding, again.request_hash) == (
        first.message_id,
        first.status,
        first.credits,
        first.funding,
        first.request_hash,
    )
    assert backend.stored() == before
    assert backend.sound().held == 3


def test_a_duplicate_message_id_with_no_credits_left_still_returns_the_original(backend, ledger, funded):
    """A retried send after the hold took the last credit is a duplicate, not a 402."""
    first, _ = ledger.hold(ACCT, hold_request("m1", segments=150))
    before = backend.stored()
    again, created = ledger.hold(ACCT, hold_request("m1", segments=150))
    assert not created
    assert (again.message_id, again.funding) == (first.message_id, first.funding)
    assert backend.stored() == before


def test_a_retry_of_the_same_hold_call_counts_as_created(ledger, funded):
    """Even once its own hold took the last credits (the retry's fresh computation would be a 402)."""
    _, created = ledger.hold(ACCT, hold_request("m1", segments=150), attempt_id="attempt-1")
    assert created
    hold, created = ledger.hold(ACCT, hold_request("m1", segments=150), attempt_id="attempt-1")
    assert created and hold.credits == 150
    assert not ledger.hold(ACCT, hold_request("m1", segments=150), attempt_id="attempt-2")[1]


def test_concurrent_holds_never_overspend(backend, ledger, account):
    """Twelve threads each hold 10 of the 50 included credits at once: exactly five holds land."""
    results: list[str] = []
    barrier = threading.Barrier(12)

    def hold(n: int) -> None:
        barrier.wait()
        try:
            ledger.hold(ACCT, hold_request(f"m{n}", segments=10))
            results.append("held")
        except InsufficientCredits:
            results.append("short")

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["held"] * 5 + ["short"] * 7
    stored = backend.sound()
    assert (nonzero(stored.pools), stored.held) == ({}, 50)


# ---- post, void, refund, delivery -----------------------------------------------------------------------


def test_post_charges_the_hold_once_and_a_voided_hold_cannot_post(backend, ledger, funded):
    hold, _ = ledger.hold(ACCT, hold_request("m1", segments=53))
    posted = ledger.post(hold, {"sid": "SM1"})
    assert posted.status == "posted"
    assert posted.provider == {"sid": "SM1"}
    stored = backend.sound()
    assert stored.held == 0
    assert nonzero(stored.pools) == {AU: 97}
    _, entries, holds = backend.statements.partition(ACCT)
    posts = [e for e in entries if e.kind == "post"]
    assert [(e.pool, e.amount, e.balance_after) for e in posts] == [(L.INCLUDED, 0, 0), (AU, 0, 97)]
    assert all(e.reference == {"message_id": "m1", "sid": "SM1"} for e in posts)
    assert [h.status for h in holds] == ["posted"]

    before = backend.stored()
    again = ledger.post(hold, {"sid": "SM1"})
    assert (again.status, again.message_id) == ("posted", "m1")
    assert backend.stored() == before

    with pytest.raises(HoldEnded) as caught:
        ledger.void(hold)
    assert caught.value.details == {"message_id": "m1", "status": "posted"}
    assert backend.stored() == before


def test_void_returns_credits_to_the_pools_they_came_from(backend, ledger, funded):
    ledger.hold(ACCT, hold_request("m0", segments=10))
    hold, _ = ledger.hold(ACCT, hold_request("m1", segments=45))  # 40 included + 5 AU
    assert hold.funding == (Funding(L.INCLUDED, 40), Funding(AU, 5))
    assert ledger.void(hold, {"error": 30003}).status == "voided"
    stored = backend.sound()
    assert nonzero(stored.pools) == {L.INCLUDED: 40, AU: 100}
    assert stored.held == 10

    before = backend.stored()
    assert ledger.void(hold).status == "voided"
    assert backend.stored() == before
    with pytest.raises(HoldEnded) as caught:
        ledger.post(hold)
    assert caught.value.details["status"] == "voided"
    assert backend.stored() == before


def test_void_after_a_refresh_lapses_the_included_part(backend, ledger, clock, funded):
    hold, _ = ledger.hold(ACCT, hold_request("m1", segments=53))  # 50 included + 3 AU
    clock.advance(days=25)
    assert refresh(ledger, clock)[1]
    assert nonzero(backend.sound().pools) == {L.INCLUDED: 50, AU: 97}

    ledger.void(hold)

    stored = backend.sound()
    assert nonzero(stored.pools) == {L.INCLUDED: 50, AU: 100}
    assert stored.held == 0
    _, entries, _ = backend.statements.partition(ACCT)
    version = max(int(e.entry_id.split(":")[1]) for e in entries)
    voids = sorted((e for e in entries if int(e.entry_id.split(":")[1]) == version), key=lambda e: e.entry_id)
    assert [(e.kind, e.pool, e.amount, e.balance_after) for e in voids] == [
        ("void", L.INCLUDED, 50, 100),
        ("expiry", L.INCLUDED, -50, 50),
        ("void", AU, 3, 100),
    ]


def test_refund_with_another_sid_recorded_is_refused(backend, ledger, funded):
    hold, _ = ledger.hold(ACCT, hold_request("m1"))
    posted = ledger.post(hold, {"sid": "SM1", "provider_status": "sent"})
    before = backend.stored()
    with pytest.raises(HoldEnded):
        ledger.refund(posted, {"sid": "SM2", "provider_status": "failed"})
    assert backend.stored() == before


def test_refund_returns_a_posted_message_once(backend, ledger, funded):
    hold, _ = ledger.hold(ACCT, hold_request("m1", segments=3))
    posted = ledger.post(hold, {"sid": "SM1", "provider_status": "sent"})
    refunded, applied = ledger.refund(posted, {"sid": "SM1", "provider_status": "failed"})
    assert applied and refunded.status == "refunded"
    assert nonzero(backend.sound().pools) == {L.INCLUDED: 50, AU: 100}
    before = backend.stored()
    again, applied = ledger.refund(posted, {"sid": "SM1", "provider_status": "failed"})
    assert not applied and again.status == "refunded"
    assert backend.stored() == before
    kinds = [e.kind for e in backend.statements.partition(ACCT)[1]]
    assert kinds.count("refund") == 1


def test_refund_after_a_final_status_was_recorded_is_refused(backend, ledger, funded):
    hold, _ = ledger.hold(ACCT, hold_request("m1"))
    posted = ledger.post(hold, {"sid": "SM1", "provider_status": "sent"})
    final = frozenset({"delivered", "undelivered", "read", "failed", "canceled"})
    assert ledger.record_delivery(posted, "delivered", sid="SM1", settled=final)
    before = backend.stored()
    with pytest.raises(HoldEnded):
        ledger.refund(posted, {"sid": "SM1", "provider_status": "failed"})
    assert backend.stored() == before
    assert not ledger.record_delivery(posted, "sent", sid="SM1", settled=final)  # final is final
    assert not ledger.record_delivery(posted, "delivered", sid="SM9", settled=frozenset())  # not its SID
    assert ledger.get_hold(ACCT, "m1").provider["provider_status"] == "delivered"


# ---- adjustments ----------------------------------------------------------------------------------------


def test_adjust_up_down_refused_and_duplicate(backend, ledger, funded):
    _, outcome = ledger.adjust(ACCT, AU, 10, op_id="adj-1", actor="support@x", reason="goodwill")
    assert outcome == {"pool": AU, "credits": 10, "balance_after": 110}
    _, outcome = ledger.adjust(ACCT, AU, -30, op_id="adj-2", actor="support@x", reason="mistake")
    assert outcome == {"pool": AU, "credits": -30, "balance_after": 80}
    assert nonzero(backend.sound().pools) == {L.INCLUDED: 50, AU: 80}

    before = backend.stored()
    with pytest.raises(InvalidRequest) as caught:
        ledger.adjust(ACCT, AU, -81, op_id="adj-3", actor="support@x", reason="too much")
    assert caught.value.details == {"pool": AU, "available": 80, "credits": -81}
    assert backend.stored() == before

    _, outcome = ledger.adjust(ACCT, AU, 10, op_id="adj-1", actor="support@x", reason="goodwill")
    assert outcome == {"pool": AU, "credits": 10, "balance_after": 110}  # the original outcome
    assert backend.stored() == before

    entries = [e for e in backend.statements.partition(ACCT)[1] if e.kind == "adjustment"]
    assert sorted(e.amount for e in entries) == [-30, 10]
    assert {json.dumps(dict(e.reference), sort_keys=True) for e in entries} == {
        json.dumps({"actor": "support@x", "reason": "goodwill"}, sort_keys=True),
        json.dumps({"actor": "support@x", "reason": "mistake"}, sort_keys=True),
    }


def test_adjust_replay_after_emptying_the_pool_answers_the_original(backend, ledger, funded):
    """The replay's movement would go below zero today; it is still the same adjustment, not a refusal."""
    _, outcome = ledger.adjust(ACCT, AU, -100, op_id="adj-z", actor="support@x", reason="refund")
    assert outcome == {"pool": AU, "credits": -100, "balance_after": 0}
    before = backend.stored()
    after, again = ledger.adjust(ACCT, AU, -100, op_id="adj-z", actor="support@x", reason="refund")
    assert again == outcome
    assert nonzero(after.pools) == {L.INCLUDED: 50}
    assert backend.stored() == before


# ---- refresh --------------------------------------------------------------------------------------------


def test_refresh_expires_leftovers_then_grants_once_per_period(backend, ledger, clock, funded):
    ledger.hold(ACCT, hold_request("m1", segments=20))  # 30 included left
    clock.advance(days=25)  # 2026-12-05
    after, applied = refresh(ledger, clock)
    assert applied
    assert after.period_start.isoformat() == "2026-12-05"
    stored = backend.sound()
    assert nonzero(stored.pools) == {L.INCLUDED: 50, AU: 100}
    assert stored.held == 20
    assert stored.period_start.isoformat() == "2026-12-05"
    entries = backend.statements.partition(ACCT)[1]
    refreshed = [e for e in entries if e.reference == {"period": "2026-12-05"}]
    assert sorted((e.kind, e.amount, e.balance_after) for e in refreshed) == [
        ("expiry", -30, 0),
        ("grant", 50, 50),
    ]

    before = backend.stored()
    again, applied = refresh(ledger, clock)
    assert not applied
    assert backend.stored() == before
    assert nonzero(again.pools) == {L.INCLUDED: 50, AU: 100}


def test_refresh_for_the_current_period_changes_nothing(backend, ledger, clock, funded):
    before = backend.stored()
    after, applied = refresh(ledger, clock)  # the account was created in this period
    assert not applied
    assert after.period_start.isoformat() == "2026-11-05"
    assert backend.stored() == before


def test_refresh_of_a_legacy_account_tops_up(backend, ledger, clock):
    ledger.create_account(new_account("acct-l", model="legacy"), reference={})
    ledger.hold("acct-l", hold_request("m1"))
    clock.advance(days=25)
    assert refresh(ledger, clock, "acct-l")[1]
    assert nonzero(backend.sound("acct-l").pools) == {L.LEGACY: 99}
    assert all(e.kind != "expiry" for e in backend.statements.partition("acct-l")[1])


def test_a_retry_of_the_same_refresh_call_reports_it_refreshed(ledger, clock, account):
    clock.advance(days=25)
    assert refresh(ledger, clock, attempt_id="attempt-1")[1]
    assert not refresh(ledger, clock, attempt_id="attempt-2")[1]  # changes nothing, whoever asks


# ---- plans ----------------------------------------------------------------------------------------------


def test_an_upgrade_grants_the_difference_once_and_a_downgrade_waits(backend, ledger, account):
    after, outcome = ledger.change_plan(ACCT, "growth", actor="support", op_id="plan:k1")
    assert (outcome["granted"], outcome["effective"], after.plan, after.allowance) == (
        50,
        "now",
        "growth",
        100,
    )
    again = ledger.change_plan(ACCT, "growth", actor="support", op_id="plan:k2")[1]
    assert (again["granted"], again["effective"]) == (0, "unchanged")
    assert nonzero(backend.sound().pools) == {L.INCLUDED: 100}
    after, outcome = ledger.change_plan(ACCT, "starter", actor="support", op_id="plan:k3")
    assert (dict(outcome), after.plan, after.pending_plan) == (
        {"plan": "growth", "pending_plan": "starter", "granted": 0, "effective": "next_refresh"},
        "growth",
        "starter",
    )


def test_a_plan_change_retried_with_its_key_answers_the_first_answer_and_moves_nothing(
    backend, ledger, account
):
    first = ledger.change_plan(ACCT, "growth", actor="support", op_id="plan:k1")[1]
    before = backend.stored()
    assert ledger.change_plan(ACCT, "growth", actor="support", op_id="plan:k1")[1] == first
    assert backend.stored() == before
    with pytest.raises(IdempotencyKeyReused):
        ledger.change_plan(ACCT, "starter", actor="support", op_id="plan:k1")
    assert backend.stored() == before


def test_a_plan_change_back_in_the_same_period_under_a_new_key_applies(backend, ledger, account):
    ledger.change_plan(ACCT, "starter", actor="support", op_id="plan:k0")  # unchanged
    ledger.change_plan(ACCT, "growth", actor="support", op_id="plan:k1")
    ledger.change_plan(ACCT, "starter", actor="support", op_id="plan:k2")
    after, outcome = ledger.change_plan(ACCT, "growth", actor="support", op_id="plan:k3")
    assert (after.pending_plan, outcome["effective"]) == (None, "now")


# ---- account settings -----------------------------------------------------------------------------------


def test_a_settings_change_is_one_write_once_per_key(backend, ledger, account, clock):
    patch = AccountPatch(stripe_customer_id="cus_saas1", low_balance_threshold=5, smart_encoding=True)
    after, answer = ledger.update_account(ACCT, patch, actor="support", op_id="settings:k1")
    assert (after.auto_recharge.customer_id, after.low_balance_threshold, after.smart_encoding) == (
        "cus_saas1",
        5,
        True,
    )
    assert (answer["stripe_customer_id"], answer["low_balance_threshold"]) == ("cus_saas1", 5)
    stored = backend.sound()
    assert (stored.auto_recharge.customer_id, stored.low_balance_threshold) == ("cus_saas1", 5)
    assert nonzero(stored.pools) == {L.INCLUDED: 50}
    before = backend.stored()
    assert ledger.update_account(ACCT, patch, actor="support", op_id="settings:k1")[1] == answer
    assert backend.stored() == before
    with pytest.raises(IdempotencyKeyReused):
        ledger.update_account(
            ACCT, patch._replace(low_balance_threshold=6), actor="support", op_id="settings:k1"
        )
    assert backend.stored() == before


def test_a_new_billing_day_moves_the_next_refresh_and_keeps_the_period(backend, ledger, account, clock):
    # today 2026-11-10, anchor the 5th: period 2026-11-05 .. 2026-12-05
    after, _ = ledger.update_account(
        ACCT, AccountPatch(billing_anchor=date(2026, 10, 20)), actor="support", op_id="settings:k1"
    )
    assert (after.billing_anchor, after.period_start, after.next_refresh_at) == (
        date(2026, 10, 20),
        date(2026, 11, 5),
        datetime(2026, 11, 20, tzinfo=UTC),
    )
    assert nonzero(backend.sound().pools) == {L.INCLUDED: 50}  # nothing granted or lapsed at the change


def test_a_future_billing_anchor_is_refused_and_writes_nothing(backend, ledger, account):
    before = backend.stored()
    with pytest.raises(BillingAnchorInFuture):
        ledger.update_account(
            ACCT, AccountPatch(billing_anchor=date(2027, 1, 15)), actor="support", op_id="settings:k1"
        )
    assert backend.stored() == before


def test_a_refresh_computed_for_the_old_billing_day_changes_nothing(backend, ledger, account, clock):
    ledger.update_account(ACCT, AccountPatch(billing_anchor=date(2026, 10, 20)), actor="support", op_id="s:1")
    clock.advance(days=25)  # 2026-12-05: the old anchor's day
    before = backend.stored()
    assert not refresh(ledger, clock)[1]
    assert backend.stored() == before


def test_a_new_stripe_customer_drops_the_card_of_the_old_one(backend, ledger, account):
    ledger.update_auto_recharge(ACCT, lambda auto: AR.with_customer(auto, "cus_old", "pm_old"), op_id="c1")
    after, answer = ledger.update_account(
        ACCT, AccountPatch(stripe_customer_id="cus_new"), actor="support", op_id="settings:k1"
    )
    assert (after.auto_recharge.customer_id, after.auto_recharge.payment_method_id) == ("cus_new", None)
    assert answer["card_on_file"] is False


def test_accounts_are_listed_by_id_a_page_at_a_time(backend, ledger):
    for account_id in ("acct-c", "acct-a", "acct-d", "acct-b", "acct-e"):
        ledger.create_account(new_account(account_id), reference={})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = backend.statements.list_accounts(limit=2, cursor=cursor)
        assert len(page) <= 2
        seen += [account.account_id for account in page]
        pages += 1
        if cursor is None:
            break
    assert seen == ["acct-a", "acct-b", "acct-c", "acct-d", "acct-e"]
    assert pages == 3
    with pytest.raises(InvalidRequest):
        backend.statements.list_accounts(limit=2, cursor="not a cursor")


def subscription(
    plan: str | None, *, event_at: int, ends_at: date | None = None, sub_id: str = "sub_1"
) -> Subscription:
    """A subscription anchored on the 5th, as the account is, created at 1000."""
    return Subscription(
        sub_id,
        "cus_1",
        "active",
        f"price_{plan}",
        plan,
        date(2026, 1, 5),
        date(2026, 12, 5),
        ends_at,
        1000,
        event_at,
    )


def test_a_subscription_upgrades_once_and_an_older_state_changes_nothing(backend, ledger, account):
    assert ledger.sync_subscription(ACCT, subscription("growth", event_at=2)) == {
        "outcome": "applied",
        "plan": "growth",
        "pending_plan": None,
        "granted": 50,
        "effective": "now",
    }
    before = backend.stored()
    assert ledger.sync_subscription(ACCT, subscription("growth", event_at=2))["outcome"] == "stale"
    assert backend.other.sync_subscription(ACCT, subscription("starter", event_at=1))["outcome"] == "stale"
    assert backend.stored() == before
    stored = backend.sound()
    assert (stored.plan, stored.allowance, nonzero(stored.pools)) == ("growth", 100, {L.INCLUDED: 100})
    assert stored.subscription == subscription("growth", event_at=2)


def test_a_canceled_subscription_s_allowance_ends_with_its_period(backend, ledger, clock, funded):
    ended = subscription("starter", event_at=2, ends_at=date(2026, 12, 5))
    assert ledger.sync_subscription(ACCT, ended)["effective"] == "unchanged"
    clock.advance(days=25)  # 2026-12-05: the period after the last one paid for
    after, applied = refresh(ledger, clock)
    assert applied and after.allowance == 0
    assert nonzero(backend.sound().pools) == {AU: 100}  # included lapsed; purchased stays
    reactivated = subscription("growth", event_at=3, sub_id="sub_2")._replace(created=2000)
    assert ledger.sync_subscription(ACCT, reactivated)["granted"] == 100
    assert nonzero(backend.sound().pools) == {L.INCLUDED: 100, AU: 100}


# ---- migration ------------------------------------------------------------------------------------------


@pytest.fixture
def legacy(ledger: LedgerOperations) -> Account:
    ledger.create_account(new_account("acct-l", model="legacy"), reference={})
    ledger.adjust("acct-l", L.LEGACY, 30, op_id="adj-l", actor="support", reason="old credits")
    return ledger.get_account("acct-l")


def test_migration_converts_the_legacy_pool_once(backend, ledger, legacy):
    done = ledger.migrate("acct-l", ratio=(1, 1), actor="support", op_id="migrate:k1")
    assert (done.outcome, done.converted, done.before.credit_model, done.after.credit_model) == (
        "migrated",
        80,
        "legacy",
        "segment",
    )
    assert nonzero(backend.sound("acct-l").pools) == {AU: 80}
    before = backend.stored()
    again = ledger.migrate("acct-l", ratio=(1, 1), actor="support", op_id="migrate:k2")
    assert (again.outcome, again.converted) == ("already_migrated", 0)
    assert backend.stored() == before
    retried = ledger.migrate("acct-l", ratio=(1, 1), actor="support", op_id="migrate:k1")
    assert retried.outcome == "migrated" and retried.replayed is not None
    assert (retried.replayed["converted"], retried.replayed["after"]["purchased"]["AU"]) == (80, 80)
    assert backend.stored() == before
    with pytest.raises(IdempotencyKeyReused):
        ledger.migrate("acct-l", ratio=(2, 1), actor="support", op_id="migrate:k1")


def migration_requests(backend: Backend) -> list[dict[str, Any]]:
    return [detail for kind, detail in backend.events() if kind == E.MIGRATION_REQUESTED]


def test_a_migration_request_is_recorded_once_with_its_event(backend, ledger, legacy, clock):
    before_version = legacy.version
    _, recorded = ledger.request_migration("acct-l", requested_by="user-1")
    assert recorded
    stored = backend.sound("acct-l")
    assert (stored.migration_requested_at, stored.migration_requested_by) == (clock.now, "user-1")
    assert stored.pools == legacy.pools and stored.version == before_version + 1
    assert [(d["requested_by"], d["legacy"], d["home_region"]) for d in migration_requests(backend)] == [
        ("user-1", 80, "AU")
    ]
    before = backend.stored()
    clock.advance(days=1)
    again, recorded = ledger.request_migration("acct-l", requested_by="user-2")
    assert not recorded
    assert (again.migration_requested_at, again.migration_requested_by) == (
        clock.now - timedelta(days=1),
        "user-1",
    )
    assert backend.stored() == before


def test_concurrent_migration_requests_record_one(backend, ledger, legacy):
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def ask(index: int) -> None:
        barrier.wait()
        results.append(backend.other.request_migration("acct-l", requested_by=f"user-{index}")[1])

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert len(migration_requests(backend)) == 1


def test_a_migration_request_for_a_segment_account_is_refused_and_writes_nothing(backend, ledger, account):
    before = backend.stored()
    with pytest.raises(NotLegacy):
        ledger.request_migration(ACCT, requested_by="user-1")
    assert backend.stored() == before


def test_a_migrated_account_keeps_its_request_and_takes_no_other(backend, ledger, legacy, clock):
    ledger.request_migration("acct-l", requested_by="user-1")
    ledger.migrate("acct-l", ratio=(1, 1), actor="support", op_id="migrate:k1")
    stored = backend.sound("acct-l")
    assert (stored.migration_requested_at, stored.migrated_at) == (clock.now, clock.now)
    with pytest.raises(NotLegacy):
        ledger.request_migration("acct-l", requested_by="user-1")


def test_migration_waits_for_held_messages(backend, ledger, legacy):
    ledger.hold("acct-l", hold_request("m1"))
    before = backend.stored()
    with pytest.raises(HoldsPending):
        ledger.migrate("acct-l", ratio=(1, 1), actor="support", op_id="migrate:k1")
    assert backend.stored() == before


def test_a_legacy_message_refunded_after_migration_returns_to_the_pool_that_replaced_legacy(
    backend, ledger, legacy
):
    """Its credits came from the legacy pool; after the migration that pool is gone: the refund goes to the home
    region's purchased pool at the migration's ratio (rounded down, as the migration rounds), never
    recreating a `legacy` pool a segment account cannot spend."""
    hold, _ = ledger.hold("acct-l", hold_request("m1"))  # a flat legacy rate: 1 legacy credit
    posted = ledger.post(hold, {"sid": "SM1", "provider_status": "sent"})
    assert [f.pool for f in posted.funding] == [L.LEGACY]
    ledger.migrate("acct-l", ratio=(3, 1), actor="support", op_id="migrate:1")  # 79 legacy credits → 237
    assert nonzero(backend.sound("acct-l").pools) == {AU: 237}
    refunded, applied = ledger.refund(posted, {"sid": "SM1", "provider_status": "failed"})
    assert applied and refunded.status == "refunded"
    assert nonzero(backend.sound("acct-l").pools) == {AU: 240}  # 1 legacy credit, 3 at the ratio
    _, entries, _ = backend.statements.partition("acct-l")
    assert [(e.kind, e.pool, e.amount) for e in entries if e.kind == "refund"] == [("refund", AU, 3)]


# ---- clawbacks ------------------------------------------------------------------------------------------


def refund(ledger: LedgerOperations, event: str, amount_refunded: int) -> int | None:
    """A refund of pi_1's charge, `amount_refunded` of its amount to date: the credits it took, None for a
    duplicate."""
    payment = ledger.get_payment("pi_1")
    assert payment is not None
    step = refund_step(payment, amount_refunded=amount_refunded, charge_amount=payment.amount_cents)
    assert step is not None
    clawed = ledger.claw_back(payment, step, op_id=f"clawback:ch_1:{event}", reference={})
    return None if clawed is None else clawed.taken


def dispute(ledger: LedgerOperations, withdrawn: int, *, closed: bool = False) -> tuple[int, int] | None:
    """Dispute dp_1 of pi_1 moved to `withdrawn` cents: (credits taken, credits given back), None for a repeat."""
    payment = ledger.get_payment("pi_1")
    assert payment is not None
    step = dispute_step(payment, "dp_1", DisputeStage(withdrawn, closed))
    assert step is not None
    clawed = ledger.claw_back(payment, step, op_id=f"dispute:dp_1:{withdrawn}:{closed}", reference={})
    return None if clawed is None else (clawed.taken, clawed.returned)


def test_a_clawback_is_proportional_once_per_event_and_never_below_zero(backend, ledger, account):
    assert buy(ledger, packs=2)  # 200 AU credits for 1240 cents
    ledger.hold(ACCT, hold_request("m1", segments=120))  # 50 included + 70 AU: 130 AU left
    assert refund(ledger, "re_1", 620) == 100  # half refunded: half the credits
    payment = ledger.get_payment("pi_1")
    assert payment is not None
    before = backend.stored()
    step = refund_step(
        payment._replace(refunds=payment.refunds._replace(refunded_cents=0, moves=0)),
        amount_refunded=620,
        charge_amount=1240,
    )
    assert step is not None
    with pytest.raises(PaymentMoved):  # the same step again, computed from the state before it
        ledger.claw_back(payment, step, op_id="clawback:ch_1:re_1", reference={})
    assert backend.stored() == before
    assert dispute(ledger, 1240) == (30, 0)  # the rest is due; 30 are left, the others spent
    payment = ledger.get_payment("pi_1")
    assert payment is not None
    assert (payment.refunds.clawed_credits, payment.taken_credits) == (200, 130)
    assert nonzero(backend.sound().pools) == {}


def test_a_clawback_of_a_payment_that_moved_since_it_was_read_is_refused(ledger, account):
    assert buy(ledger)
    payment = ledger.get_payment("pi_1")
    assert payment is not None
    assert refund(ledger, "re_1", 310) == 50  # half of one pack's 620 cents
    stale = refund_step(payment, amount_refunded=620, charge_amount=620)
    assert stale is not None
    with pytest.raises(PaymentMoved):
        ledger.claw_back(payment, stale, op_id="clawback:ch_1:re_2", reference={})


def test_a_reversed_dispute_gives_back_what_it_took_once_and_resumes_auto_recharge(
    backend, ledger, recharging
):
    assert buy(ledger, packs=2)  # 200 AU credits for 1240 cents
    ledger.hold(ACCT, hold_request("m1", segments=150))  # included drained: 150 AU held, 50 AU left
    assert dispute(ledger, 620) == (50, 0)  # half disputed: 100 due, only 50 left to take
    assert ledger.get_account(ACCT).auto_recharge.disabled_reason == AR.DISABLED_DISPUTE
    assert dispute(ledger, 0, closed=True) == (0, 50)  # won: the 50 taken come back, never the 100 due
    account = ledger.get_account(ACCT)
    assert (account.pools["purchased:AU"], account.auto_recharge.enabled) == (50, True)
    payment = ledger.get_payment("pi_1")
    assert payment is not None
    assert (payment.refunds.clawed_credits, payment.refunds.disputed_cents, payment.taken_credits) == (
        0,
        0,
        0,
    )
    assert dispute_step(payment, "dp_1", DisputeStage(1240, False)) is None  # closed is final
    stale = dispute_step(
        payment._replace(refunds=payment.refunds._replace(moves=1)), "dp_1", DisputeStage(0, True)
    )
    assert stale is None
    backend.sound()
    _, entries, _ = backend.statements.partition(ACCT)
    moved = [(e.kind, e.amount) for e in entries if e.kind in ("clawback", "reinstatement")]
    assert moved == [("clawback", -50), ("reinstatement", 50)]


def test_an_order_is_noted_failed_or_bound_to_its_payment_intent_and_a_paid_order_stays_paid(
    backend, ledger, account
):
    ledger.open_order(pack_order(order_id="cs_2"))
    noted = ledger.note_order("cs_2", payment_intent="pi_2", status="failed", failure="async_payment_failed")
    assert noted is not None
    assert (noted.status, noted.failure, noted.payment_intent) == ("failed", "async_payment_failed", "pi_2")
    assert ledger.note_order("cs_2", payment_intent="pi_other") is None  # bound once, as a grant binds it
    assert ledger.note_order("cs_missing", status="failed", failure="x") is None
    assert buy(ledger)
    before = backend.stored()
    assert ledger.note_order("cs_1", status="unfulfilled", failure="amount") is None
    assert backend.stored() == before
    order = ledger.get_order("cs_1")
    assert order is not None and (order.status, order.failure) == ("paid", None)


# ---- auto-recharge: one claim in flight -----------------------------------------------------------------


@pytest.fixture
def recharging(ledger: LedgerOperations, account: Account) -> Account:
    """Auto-recharge on for AU (one pack, $50 a month) with a card on file, and no credits left."""

    def on(auto: AR.AutoRecharge) -> AR.AutoRecharge:
        auto = AR.with_customer(auto, "cus_1", "pm_1")
        return AR.with_settings(auto, enabled=True, regions={"AU": AR.RegionRule(1)}, monthly_cap_cents=5000)

    ledger.update_auto_recharge(ACCT, on, op_id="settings")
    ledger.adjust(ACCT, L.INCLUDED, -50, op_id="drain", actor="support", reason="drain")
    return ledger.get_account(ACCT)


def test_one_recharge_claim_in_flight_per_region(backend, ledger, recharging):
    claim = ledger.claim_recharge(ACCT, "AU", 1)
    assert (claim.recharge_id, claim.amount_cents, claim.customer) == ("rch_acct-1_AU_1", 620, "cus_1")
    order = ledger.get_order(claim.recharge_id)
    assert order is not None and order.kind == "recharge"
    before = backend.stored()
    with pytest.raises(AR.RechargeInFlight):
        backend.other.claim_recharge(ACCT, "AU", 1)
    assert backend.stored() == before
    assert ledger.get_account(ACCT).auto_recharge.spent_this_period_cents == 620


def test_concurrent_claims_make_one_recharge(backend, ledger, recharging):
    results: list[str] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        try:
            results.append(ledger.claim_recharge(ACCT, "AU", 1).recharge_id)
        except AR.RechargeInFlight:
            results.append("in flight")

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["in flight"] * 5 + ["rch_acct-1_AU_1"]


def test_a_settled_recharge_releases_its_claim_and_a_failure_is_counted_once(backend, ledger, recharging):
    claim = ledger.claim_recharge(ACCT, "AU", 1)
    order = ledger.get_order(claim.recharge_id)
    assert order is not None
    assert ledger.settle_recharge(PaidOrder(order, "pi_rch"), source="charge")
    auto = ledger.get_account(ACCT).auto_recharge
    assert (dict(auto.inflight), auto.consecutive_failures) == ({}, 0)
    assert nonzero(backend.sound().pools) == {AU: 100}
    second = ledger.claim_recharge(ACCT, "AU", 101)
    assert ledger.record_recharge_failure(
        ACCT, "AU", second.recharge_id, code="card_declined", message=None
    ) == (
        True,
        None,
    )
    before = backend.stored()
    assert ledger.record_recharge_failure(
        ACCT, "AU", second.recharge_id, code="card_declined", message=None
    ) == (
        False,
        None,
    )
    assert backend.stored() == before
    auto = ledger.get_account(ACCT).auto_recharge
    assert (dict(auto.inflight), auto.consecutive_failures, auto.spent_this_period_cents) == ({}, 1, 620)


# ---- statements -----------------------------------------------------------------------------------------


@pytest.fixture
def history(ledger: LedgerOperations, clock: Clock, account: Account) -> list[str]:
    """Eight entries written an hour apart; returns their entry ids newest first."""
    clock.advance(hours=1)
    buy(ledger)
    clock.advance(hours=1)
    ledger.hold(ACCT, hold_request("m1", segments=3))
    clock.advance(hours=1)
    m2, _ = ledger.hold(ACCT, hold_request("m2", segments=60))
    clock.advance(hours=1)
    ledger.void(m2)
    clock.advance(hours=1)
    ledger.post(ledger.get_hold(ACCT, "m1"))
    return [
        f"{ACCT}:{version}:{index}"
        for version, index in [(6, 0), (5, 1), (5, 0), (4, 1), (4, 0), (3, 0), (2, 0), (1, 0)]
    ]


def read_all(statements: Statements, limit: int, **filters: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(50):
        page, cursor = statements.statement(ACCT, limit=limit, cursor=cursor, **filters)
        assert len(page) <= limit
        ids.extend(e.entry_id for e in page)
        if cursor is None:
            return ids
    raise AssertionError("the cursor never ran out")


@pytest.mark.parametrize("limit", [1, 3, 8, 100])
def test_statement_pages_newest_first(backend, history, limit):
    assert read_all(backend.statements, limit) == history


def test_statement_page_content(backend, history):
    page, cursor = backend.statements.statement(ACCT, limit=3)
    assert cursor is not None
    assert [(e.kind, e.pool, e.amount, e.balance_after) for e in page] == [
        ("post", L.INCLUDED, 0, 47),
        ("void", AU, 13, 100),
        ("void", L.INCLUDED, 47, 47),
    ]
    times = [e.created_at for e in backend.statements.statement(ACCT, limit=100)[0]]
    assert times == sorted(times, reverse=True)


def test_statement_filters_by_kind(backend, history):
    assert read_all(backend.statements, 1, kinds=("hold",)) == [f"{ACCT}:4:1", f"{ACCT}:4:0", f"{ACCT}:3:0"]
    assert read_all(backend.statements, 2, kinds=("grant", "purchase")) == [f"{ACCT}:2:0", f"{ACCT}:1:0"]
    assert read_all(backend.statements, 5, kinds=("clawback",)) == []


def test_statement_filters_by_dates(backend, clock, history):
    from datetime import timedelta

    start = clock.now - timedelta(hours=2)  # the hour m2 was held
    end = clock.now - timedelta(hours=1)  # up to (not including) the void
    page, cursor = backend.statements.statement(ACCT, limit=10, start=start, end=end)
    assert [e.entry_id for e in page] == [f"{ACCT}:4:1", f"{ACCT}:4:0"]
    assert cursor is None
    assert all(start <= e.created_at < end for e in page)
    assert read_all(backend.statements, 1, start=start, kinds=("void",)) == [f"{ACCT}:5:1", f"{ACCT}:5:0"]


def test_statement_refuses_a_cursor_it_did_not_give(backend, history):
    with pytest.raises(InvalidRequest) as caught:
        backend.statements.statement(ACCT, limit=2, cursor="garbage!!")
    assert caught.value.details == {"cursor": "invalid"}


def test_statement_cursor_of_another_account_is_refused(backend, ledger, history):
    ledger.create_account(new_account("acct-2"), reference={})
    ledger.adjust("acct-2", AU, 5, op_id="adj-2", actor="support", reason="test")
    _, cursor = backend.statements.statement("acct-2", limit=1)
    assert cursor is not None
    with pytest.raises(InvalidRequest):
        backend.statements.statement(ACCT, limit=1, cursor=cursor)


# ---- two processes ----------------------------------------------------------------------------------------


def test_two_ledgers_alternating_stay_correct(backend, ledger, funded):
    ledgers = [ledger, backend.other]
    holds: list[Hold] = []
    for n in range(30):
        hold, created = ledgers[n % 2].hold(ACCT, hold_request(f"m{n}", segments=5))
        assert created
        holds.append(hold)
        if n % 10 == 9:
            assert backend.sound().held == 5 * (n + 1)
    for each in ledgers:
        with pytest.raises(InsufficientCredits):
            each.hold(ACCT, hold_request("m-last", segments=1))
    for n, hold in enumerate(holds):
        if n % 3 == 0:
            ledgers[(n + 1) % 2].void(hold)
        else:
            ledgers[n % 2].post(hold)
    stored = backend.sound()
    assert stored.held == 0
    assert sum(stored.pools.values()) == sum(5 for n in range(30) if n % 3 == 0)
    a, _ = ledgers[0].adjust(ACCT, US, 1, op_id="adj-a", actor="support", reason="a")
    b, _ = ledgers[1].adjust(ACCT, US, 1, op_id="adj-b", actor="support", reason="b")
    assert nonzero(b.pools) == nonzero(backend.sound().pools)
    assert b.version == a.version + 1


def test_a_refusal_from_a_stale_view_is_checked_against_the_stored_balance(ledger, backend, account):
    """A ledger whose view says "empty" must not refuse a hold the stored balance can pay for."""
    ledger.hold(ACCT, hold_request("m1", segments=50))
    backend.other.adjust(ACCT, AU, 10, op_id="adj-1", actor="support", reason="top up")
    hold, created = ledger.hold(ACCT, hold_request("m2", segments=10))
    assert created
    assert hold.funding == (Funding(AU, 10),)


# ---- events: written with the movement that causes them (the outbox) -----------------------------------


def test_a_movement_writes_its_events_with_stable_ids_and_a_repeat_writes_none(
    backend, ledger, clock, funded
):
    clock.advance(days=30)
    assert refresh(ledger, clock)[1]
    written = [(kind, detail) for kind, detail in backend.events() if kind == E.ALLOWANCE_REFRESHED]
    assert len(written) == 1
    kind, detail = written[0]
    op_id = f"refresh:{detail['period_start']}"
    assert detail["event_id"] == E.event_id(ACCT, op_id, 0, kind)
    assert (detail["account_id"], detail["plan"], detail["allowance"]) == (ACCT, "starter", 50)
    before = backend.stored()
    assert not refresh(ledger, clock)[1]
    assert not backend.other.refresh_allowance(
        ACCT, period_start=clock.now.date().replace(day=5), next_refresh_at=clock.now
    )[1]
    assert backend.stored() == before  # a repeat: no entry, no event


def test_a_hold_posted_writes_message_sent_and_a_void_message_failed(backend, ledger, funded):
    sent, _ = ledger.hold(ACCT, hold_request("m-sent"))
    ledger.post(sent, {"sid": "SM1", "provider_status": "queued"})
    refused, _ = ledger.hold(ACCT, hold_request("m-refused"))
    ledger.void(refused, {"result": "rejected", "error_code": 21211})
    ledger.post(sent, {"sid": "SM1"})  # a repeat: nothing moves, nothing written
    messages = sorted(((k, d) for k, d in backend.events() if k.startswith("message.")), reverse=True)
    assert [(k, d["message_id"]) for k, d in messages] == [
        (E.MESSAGE_SENT, "m-sent"),
        (E.MESSAGE_FAILED, "m-refused"),
    ]
    assert messages[0][1]["sid"] == "SM1" and messages[0][1]["segments"] == 1
    assert (messages[1][1]["reason"], messages[1][1]["error_code"]) == ("rejected", 21211)


def test_twilio_counting_other_segments_writes_segments_mismatch_with_the_post(backend, ledger, funded):
    hold, _ = ledger.hold(ACCT, hold_request("m-2", segments=2))
    ledger.post(hold, {"sid": "SM2", "num_segments": 3})
    mismatches = [d for k, d in backend.events() if k == E.SEGMENTS_MISMATCH]
    assert [(d["message_id"], d["segments"], d["provider_segments"]) for d in mismatches] == [("m-2", 2, 3)]
    assert backend.sound().pools[L.INCLUDED] == 48  # we bill what we quoted


def low_balance_events(backend: Backend) -> list[tuple[str, str, int]]:
    """The low-balance events written, sorted (the outbox keeps no order among events of the same instant)."""
    return sorted(
        (kind, detail["region"], detail["spendable"])
        for kind, detail in backend.events()
        if kind in (E.CREDITS_LOW, E.CREDITS_DEPLETED)
    )


def test_credits_low_and_depleted_fire_once_per_crossing_and_rearm_when_the_balance_rises(
    backend, ledger, account
):
    def adjust(credits: int, key: str) -> None:
        ledger.adjust(ACCT, L.INCLUDED, credits, op_id=key, actor="support", reason=key)

    adjust(-31, "a")  # 50 → 19: below 20
    adjust(-1, "b")  # 18: still below, already fired
    assert low_balance_events(backend) == [(E.CREDITS_LOW, "AU", 19)]
    assert dict(backend.sound().balance_alerts) == {"AU": E.LOW}
    adjust(-18, "c")  # 0: depleted
    adjust(25, "d")  # 25: re-armed
    assert dict(backend.sound().balance_alerts) == {}
    adjust(-25, "e")  # straight to 0: both, once each
    assert low_balance_events(backend) == [
        (E.CREDITS_DEPLETED, "AU", 0),
        (E.CREDITS_DEPLETED, "AU", 0),
        (E.CREDITS_LOW, "AU", 0),
        (E.CREDITS_LOW, "AU", 19),
    ]


def test_concurrent_holds_that_cross_the_threshold_fire_credits_low_once(backend, ledger, account):
    ledger.adjust(ACCT, L.INCLUDED, -25, op_id="down", actor="support", reason="to 25")
    barrier = threading.Barrier(6)

    def send(index: int) -> None:
        barrier.wait()
        backend.other.hold(ACCT, hold_request(f"c-{index}"))

    threads = [threading.Thread(target=send, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.sound().pools[L.INCLUDED] == 19
    assert low_balance_events(backend) == [(E.CREDITS_LOW, "AU", 19)]


def test_a_statement_request_reads_a_bounded_number_of_entries_and_its_cursor_resumes(backend, history):
    cast(Any, backend.statements).max_scanned = 3
    page, cursor = backend.statements.statement(ACCT, limit=10, kinds=("purchase",))
    assert (page, cursor is not None) == ([], True)  # three newest entries read, none a purchase: short page
    assert read_all(backend.statements, 10, kinds=("purchase",)) == [f"{ACCT}:2:0"]
    assert read_all(backend.statements, 2) == history


# ---- batches --------------------------------------------------------------------------------------------


def batch_plan(ledger: LedgerOperations, au: int, us: int) -> Any:
    from smscredits.domain import batches as B
    from smscredits.services import batches

    entries = [B.Entry(f"+61412{i:06d}", "hi") for i in range(au)]
    entries += [B.Entry(f"+14152{300000 + i:06d}", "hi") for i in range(us)]
    return batches.plan(ledger.get_account(ACCT), entries, ledger.legacy_rates)


def test_a_batch_reserves_in_one_write_with_one_entry_per_pool(backend, ledger, funded):
    plan = batch_plan(ledger, au=60, us=10)
    batch, created = ledger.reserve_batch(ACCT, plan, batch_id="bat_1", request_hash="h1", attempt_id="a1")
    assert created and batch.credits_held == 70
    # US has no pool of its own: the included pool pays it first, then AU's rest, then purchased:AU.
    assert dict(batch.funding) == {
        "AU": (Funding(L.INCLUDED, 40), Funding(AU, 20)),
        "US": (Funding(L.INCLUDED, 10),),
    }
    stored = backend.sound()
    assert nonzero(stored.pools) == {AU: 80} and stored.held == 70
    _, entries, holds = backend.statements.partition(ACCT)
    assert [(e.kind, e.pool, e.amount) for e in entries if e.reference.get("batch_id") == "bat_1"] == [
        ("hold", L.INCLUDED, -50),
        ("hold", AU, -20),
    ]
    assert [(h.message_id, h.status, h.credits) for h in holds] == [("bat_1", "pending", 70)]
    again, created = backend.other.reserve_batch(
        ACCT, plan, batch_id="bat_1", request_hash="h1", attempt_id="a2"
    )
    assert not created and again.credits_held == 70 and backend.sound().held == 70


def test_a_short_batch_is_refused_with_its_shortfall_and_writes_nothing(backend, ledger, funded):
    before = backend.stored()
    with pytest.raises(InsufficientCredits) as short:
        ledger.reserve_batch(
            ACCT, batch_plan(ledger, au=140, us=20), batch_id="bat_2", request_hash="h", attempt_id="a"
        )
    assert short.value.details["shortfall"] == {"US": 10}  # included covers AU's deficit first (code order)
    assert backend.stored() == before


def test_settlements_move_the_difference_once_and_end_the_hold(backend, ledger, funded):
    from smscredits.domain import batches as B

    ledger.reserve_batch(
        ACCT, batch_plan(ledger, au=60, us=0), batch_id="bat_3", request_hash="h", attempt_id="a"
    )
    first = {"AU": B.Settled(posted=45, returned=5)}
    batch, ended = ledger.settle_batch(ACCT, "bat_3", lambda _: (first, False))
    assert not ended and (batch.posted, batch.returned, batch.settlements) == (45, 5, 1)
    before = backend.stored()
    batch, _ = backend.other.settle_batch(ACCT, "bat_3", lambda _: (first, False))  # the same count again
    assert backend.stored() == before and batch.settlements == 1
    stored = backend.sound()
    assert stored.held == 10 and nonzero(stored.pools) == {AU: 95}  # 5 back to purchased:AU (back first)
    batch, ended = ledger.settle_batch(ACCT, "bat_3", lambda _: ({"AU": B.Settled(50, 10)}, True))
    assert ended and batch.status == "completed"
    stored = backend.sound()
    assert stored.held == 0 and nonzero(stored.pools) == {AU: 100}
    assert ledger.cancel_batch(ACCT, "bat_3")[1] is False  # an ended batch cannot be cancelled


def test_a_batch_is_cancelled_once(backend, ledger, funded):
    ledger.reserve_batch(
        ACCT, batch_plan(ledger, au=5, us=0), batch_id="bat_4", request_hash="h", attempt_id="a"
    )
    batch, asked = ledger.cancel_batch(ACCT, "bat_4")
    assert asked and batch.cancel_requested
    before = backend.stored()
    assert backend.other.cancel_batch(ACCT, "bat_4")[1] is False
    assert backend.stored() == before


# ---- a busy Twilio, the dispatch mark, a late charge ------------------------------------------------------


def test_a_hold_voided_as_retryable_is_held_again_once_as_its_next_try(backend, ledger, funded):
    hold, _ = ledger.hold(ACCT, hold_request("m1", segments=3))
    ledger.void(hold, {"result": "busy", "retryable": True})
    again, created = ledger.hold(ACCT, hold_request("m1", segments=3), attempt_id="try-2")
    assert created and (again.status, again.tries, again.dispatching) == ("pending", 2, "")
    racing, created = backend.other.hold(ACCT, hold_request("m1", segments=3), attempt_id="try-2b")
    assert not created and racing.attempt_id == "try-2"  # the racing replay finds the try that won
    assert backend.sound().held == 3 and nonzero(backend.sound().pools) == {L.INCLUDED: 47, AU: 100}
    plain, _ = ledger.hold(ACCT, hold_request("m2"))
    ledger.void(plain, {"error_code": 21610})  # a refusal: the key stays used
    assert ledger.hold(ACCT, hold_request("m2"), attempt_id="again") == (ledger.get_hold(ACCT, "m2"), False)


def test_a_hold_is_dispatched_by_one_attempt_only(backend, ledger, funded):
    hold, _ = ledger.hold(ACCT, hold_request("m1"))
    assert ledger.dispatch(hold, "first").dispatching == "first"
    assert backend.other.dispatch(hold, "second").dispatching == "first"
    assert ledger.get_hold(ACCT, "m1").dispatching == "first"
    ended = ledger.void(ledger.get_hold(ACCT, "m1"))
    assert ledger.dispatch(ended, "third").status == "voided"


def test_an_earlier_try_sent_after_all_is_charged_once_and_owes_what_no_pool_has(backend, ledger, account):
    first, _ = ledger.hold(ACCT, hold_request("m1", segments=2))
    ledger.void(first, {"result": "busy", "retryable": True})  # Twilio answered 5xx to try 1
    second, created = ledger.hold(ACCT, hold_request("m1", segments=2))
    assert created and second.tries == 2
    ledger.post(second, {"sid": "SM2"})
    ledger.adjust(ACCT, L.INCLUDED, -47, op_id="drain", actor="support", reason="test")  # 1 left
    assert ledger.charge_earlier_try(second, 1, sid="SM1") == ("SM1", True)
    assert nonzero(backend.sound().pools) == {L.OWED: 1}  # 1 taken, 1 owed; no pool below zero
    before = backend.stored()
    assert ledger.charge_earlier_try(second, 1, sid="SM1") == ("SM1", False)  # once per try
    assert ledger.charge_earlier_try(second, 1, sid="SM9") == ("SM1", False)  # the SID it was charged under
    assert backend.stored() == before
    assert ledger.get_hold(ACCT, "m1").status == "posted"  # try 2 keeps its own state
    _, entries, _ = backend.statements.partition(ACCT)
    assert [
        (e.kind, e.pool, e.amount, e.reference.get("try")) for e in entries if e.kind == "late_charge"
    ] == [
        ("late_charge", L.INCLUDED, -1, 1),
        ("late_charge", L.OWED, 1, 1),
    ]


def test_a_late_charge_takes_the_credits_again_and_owes_what_no_pool_has(backend, ledger, clock, account):
    hold, _ = ledger.hold(ACCT, hold_request("m1", segments=3))
    voided = ledger.void(hold, {"provider_status": "no_callback", "result": "swept"})
    ledger.adjust(ACCT, L.INCLUDED, -49, op_id="drain", actor="support", reason="test")  # 1 left
    charged, applied = ledger.charge_late(voided, {"provider_status": "delivered"}, sid="SM1")
    assert applied and charged.status == "posted" and charged.provider["late_charge"] is True
    assert nonzero(backend.sound().pools) == {L.OWED: 2}  # 1 taken, 2 owed; no pool below zero
    assert ledger.charge_late(voided, {"provider_status": "delivered"}, sid="SM1")[1] is False
    ledger.adjust(ACCT, L.INCLUDED, 5, op_id="topup", actor="support", reason="test")
    assert nonzero(backend.sound().pools) == {L.INCLUDED: 3}  # the grant repaid the 2 owed first
    _, entries, _ = backend.statements.partition(ACCT)
    assert [(e.kind, e.pool, e.amount) for e in entries if e.kind in ("late_charge", "repayment")] == [
        ("late_charge", L.INCLUDED, -1),
        ("late_charge", L.OWED, 2),
        ("repayment", L.INCLUDED, -2),
        ("repayment", L.OWED, -2),
    ]
