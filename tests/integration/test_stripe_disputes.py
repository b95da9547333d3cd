"""Refunds and disputes through the webhook: the share each takes back, what a reversed dispute gives back,
in any delivery order and from several instances at once (issue 16)."""

from __future__ import annotations

import random
import threading
from typing import Any

from smscredits import runtime
from smscredits.domain.audit import check_account
from smscredits.services import stripe_events
from tests.functions import call, user
from tests.integration.conftest import create, service_ledger
from tests.integration.stripe_support import (
    WITHDRAWAL,
    adjust,
    balance,
    checkout,
    deliver,
    dispute_event,
    dispute_won,
    get_auto_recharge,
    put_auto_recharge,
    stripe_api,
    stripe_event,
)

__all__ = ["stripe_api"]

AUTO = {"enabled": True, "regions": {"AU": {"packs": 1}}, "monthly_cap_cents": 5000}


def bought(stripe_api: Any, *, auto: bool = False) -> None:
    """acct-1 with one paid checkout of two AU packs (200 credits for 1240 cents, pi_test_123)."""
    create()
    if auto:
        assert put_auto_recharge(AUTO)[0] == 200
    assert deliver(checkout(stripe_api).session_event())[1]["outcome"] == "granted"


def outcome(body: dict[str, Any]) -> str:
    status, answer = deliver(body)
    assert status == 200, answer
    return str(answer["outcome"])


def au() -> int:
    return int(balance()["purchased"]["AU"])


def entries(kind: str) -> list[dict[str, Any]]:
    status, answer = call("account_api", "account_get_ledger", claims=user(), query={"kind": kind})
    assert status == 200, answer
    return list(answer["entries"])


def audit(account: str = "acct-1") -> list[str]:
    return check_account(*runtime.container().statements.partition(account))


# ---- refunds: the charge's own units ----------------------------------------------------------------------


def test_a_refund_share_is_the_charges_own_amount_refunded_over_its_amount(service, stripe_api):
    """Stripe's charge amounts are in the charge's currency: the share refunded is amount_refunded / amount of
    that charge, never amount_refunded compared with the order's stored cents."""
    bought(stripe_api)
    half = stripe_event(
        "stripe_charge_refunded", amount=1100, amount_captured=1100, currency="eur", amount_refunded=550
    )
    assert outcome(half) == "clawed_back"
    assert au() == 100
    assert outcome({**half, "id": "evt_again"}) == "duplicate"
    third = stripe_event(
        "stripe_charge_refunded", amount=1100, amount_captured=1100, currency="eur", amount_refunded=916
    )
    assert outcome(third) == "clawed_back"
    assert au() == 34  # 200 * 916 / 1100 = 166.5: 166 taken in all, rounded down
    assert audit() == []


# ---- disputes: the disputed share, only once funds are withdrawn --------------------------------------------


def test_a_dispute_takes_back_only_the_disputed_share(service, stripe_api):
    bought(stripe_api)
    partial = dispute_event(amount=620, balance_transactions=[{**WITHDRAWAL, "amount": -620}])
    assert outcome(partial) == "clawed_back"
    assert au() == 100  # 620 of the charge's 1240 cents disputed: half its credits
    [taken] = entries("clawback")
    assert (taken["amount"], taken["reference"]["dispute"]) == (-100, "dp_test_123")
    assert audit() == []


def test_an_inquiry_takes_nothing_and_leaves_auto_recharge_on(service, stripe_api):
    bought(stripe_api, auto=True)
    for status in ("warning_needs_response", "warning_under_review"):
        assert outcome(dispute_event(status=status, balance_transactions=[])) == "unchanged"
    assert outcome(dispute_event("closed", status="warning_closed", balance_transactions=[])) == "recorded"
    assert au() == 200 and entries("clawback") == []
    assert balance()["auto_recharge"] == {"enabled": True, "disabled_reason": None}


def test_a_chargeback_takes_back_when_its_funds_are_withdrawn(service, stripe_api):
    bought(stripe_api, auto=True)
    assert outcome(dispute_event(balance_transactions=[])) == "unchanged"  # not withdrawn yet
    assert au() == 200 and balance()["auto_recharge"]["enabled"] is True
    assert outcome(dispute_event("funds_withdrawn")) == "clawed_back"
    assert au() == 0
    assert balance()["auto_recharge"] == {"enabled": False, "disabled_reason": "payment_disputed"}
    assert outcome(dispute_event()) == "unchanged"  # created, delivered late, carrying the withdrawal
    assert len(entries("clawback")) == 1 and audit() == []


def test_a_won_dispute_gives_back_what_it_took_once_and_resumes_auto_recharge(service, stripe_api):
    bought(stripe_api, auto=True)
    adjust("purchased:AU", -150)  # 150 of the 200 were spent
    assert outcome(dispute_event()) == "clawed_back"
    assert au() == 0  # the 50 left were taken; the 150 spent stay spent
    assert outcome(dispute_won()) == "given_back"
    assert au() == 50  # what was taken, never the 200 the dispute was worth
    assert balance()["auto_recharge"] == {"enabled": True, "disabled_reason": None}
    for repeat in (dispute_won("funds_reinstated"), dispute_won(), dispute_event("funds_withdrawn")):
        assert outcome(repeat) == "unchanged"
    assert au() == 50
    [given] = entries("reinstatement")
    assert (given["amount"], given["pool"], given["reference"]["dispute"]) == (
        50,
        "purchased:AU",
        "dp_test_123",
    )
    assert audit() == []


def test_funds_reinstated_alone_gives_back_once(service, stripe_api):
    bought(stripe_api)
    assert outcome(dispute_event("funds_withdrawn")) == "clawed_back"
    assert outcome(dispute_won("funds_reinstated", status="under_review")) == "given_back"
    assert outcome(dispute_won()) == "unchanged"
    assert au() == 200 and audit() == []


def test_a_dispute_closed_before_it_was_seen_created_takes_nothing(service, stripe_api):
    """Stripe does not promise an order: the closing event can come first (a lost delivery found later)."""
    bought(stripe_api, auto=True)
    assert outcome(dispute_won()) == "recorded"
    for late in (dispute_event(), dispute_event("funds_withdrawn"), dispute_event("updated")):
        assert outcome(late) == "unchanged"
    assert au() == 200 and entries("clawback") == []
    assert balance()["auto_recharge"] == {"enabled": True, "disabled_reason": None}


def test_a_lost_dispute_keeps_what_it_took_and_auto_recharge_paused(service, stripe_api):
    bought(stripe_api, auto=True)
    assert outcome(dispute_event()) == "clawed_back"
    assert outcome(dispute_event("closed", status="lost")) == "recorded"
    assert outcome(dispute_won("funds_reinstated")) == "unchanged"  # closed is final
    assert au() == 0
    assert balance()["auto_recharge"] == {"enabled": False, "disabled_reason": "payment_disputed"}


def test_auto_recharge_stays_off_when_the_owner_switched_it_off_during_the_dispute(service, stripe_api):
    bought(stripe_api, auto=True)
    assert outcome(dispute_event()) == "clawed_back"
    assert put_auto_recharge({**AUTO, "enabled": False})[0] == 200
    assert outcome(dispute_won()) == "given_back"
    assert au() == 200
    assert get_auto_recharge()["enabled"] is False


def test_a_refund_then_a_dispute_of_the_same_charge_take_back_once(service, stripe_api):
    bought(stripe_api)
    assert outcome(stripe_event("stripe_charge_refunded")) == "clawed_back"
    assert outcome(dispute_event()) == "recorded"  # the refund already took the credits back
    assert au() == 0
    assert outcome(dispute_won()) == "recorded"  # it took nothing, so it gives nothing back
    assert au() == 0 and len(entries("clawback")) == 1 and entries("reinstatement") == []
    assert audit() == []


def test_dispute_events_delivered_at_once_from_many_instances_settle_one_way(
    service, stripe_api, dynamodb, dynamo_fidelity
):
    """Eight instances at once, four with the withdrawal and four with the win, in a shuffled order, on a
    DynamoDB that collides as AWS does (the fidelity layer): whichever lands first, the credits end where the
    win leaves them and the ledger stays sound."""
    bought(stripe_api, auto=True)
    adjust("purchased:AU", -150)
    bodies = [dispute_event("funds_withdrawn")] * 4 + [dispute_won()] * 4
    random.shuffle(bodies)
    barrier = threading.Barrier(len(bodies))
    outcomes: list[str] = []
    payments = runtime.container().payments

    def worker(body: dict[str, Any]) -> None:
        ports = stripe_events.StripePorts(service_ledger(dynamodb, service), payments)
        barrier.wait()
        outcomes.append(stripe_events.handle_event(ports, body))

    threads = [threading.Thread(target=worker, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert au() == 50
    assert balance()["auto_recharge"] == {"enabled": True, "disabled_reason": None}
    taken = -sum(e["amount"] for e in entries("clawback"))
    given = sum(e["amount"] for e in entries("reinstatement"))
    assert taken == given and taken in (0, 50)
    assert outcomes.count("unchanged") >= 6 and audit() == []
