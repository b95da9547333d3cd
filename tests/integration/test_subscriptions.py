"""Stripe Billing through the webhook handler: subscriptions set plan, anchor and cancellation; invoice.paid
refreshes once together with the hourly backstop; out-of-order and repeated events; the ledger checked throughout."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from smscredits import runtime
from smscredits.adapters.dynamo.customers import DynamoCustomers
from smscredits.adapters.dynamo.outbox import outbox_items
from smscredits.adapters.memory_customers import InMemoryCustomers
from smscredits.domain.audit import check_account
from smscredits.settings import Settings
from tests.conftest import TABLE, Clock
from tests.functions import Context, event, load_function
from tests.integration.conftest import create
from tests.integration.stripe_support import adjust, balance, deliver, stripe_api

__all__ = ["stripe_api"]

PRICES = {"price_starter": "starter", "price_essentials": "essentials", "price_growth": "growth"}
ANCHOR = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)  # the test clock's now


@pytest.fixture
def billing(service: Clock, stripe_api: Any, dynamodb: Any) -> Iterator[Any]:
    settings = Settings.model_validate({**runtime.container().settings.model_dump(), "plan_prices": PRICES})
    runtime.use(
        runtime.container().replace(
            settings=settings,
            customers=DynamoCustomers(TABLE, client=dynamodb),
            refresh_queue=None,
        )
    )
    yield dynamodb


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def month_after(moment: datetime) -> datetime:
    return moment.replace(month=moment.month % 12 + 1, year=moment.year + moment.month // 12)


class Sub:
    """One Stripe subscription and the events Stripe sends about it (each a second later than the last)."""

    def __init__(self, sub_id: str, customer: str, account: str | None, created: datetime) -> None:
        self.id, self.customer, self.account, self.created = sub_id, customer, account, created
        self.at = unix(created)

    def event(
        self, kind: str, price: str, *, period_end: datetime, cancel: bool = False, at: int | None = None
    ) -> dict[str, Any]:
        if at is None:
            self.at += 1
            at = self.at
        metadata = {"account_id": self.account, "home_region": "AU"} if self.account else {}
        obj = {
            "id": self.id,
            "object": "subscription",
            "customer": self.customer,
            "status": "canceled" if kind.endswith("deleted") else "active",
            "metadata": metadata,
            "billing_cycle_anchor": unix(self.created),
            "created": unix(self.created),
            "cancel_at_period_end": cancel,
            "items": {"data": [{"price": {"id": price}, "current_period_end": unix(period_end)}]},
        }
        return {
            "id": f"evt_{self.id}_{at}",
            "object": "event",
            "type": kind,
            "created": at,
            "data": {"object": obj},
        }

    def invoice(self, start: datetime, reason: str = "subscription_cycle") -> dict[str, Any]:
        invoice = {
            "id": f"in_{self.id}_{unix(start)}",
            "object": "invoice",
            "customer": self.customer,
            "billing_reason": reason,
            "lines": {"data": [{"period": {"start": unix(start), "end": unix(month_after(start))}}]},
        }
        return {
            "id": f"evt_in_{unix(start)}",
            "object": "event",
            "type": "invoice.paid",
            "created": unix(start),
            "data": {"object": invoice},
        }


def outcome(body: dict[str, Any]) -> str:
    status, answer = deliver(body)
    assert status == 200, answer
    return str(answer["outcome"])


def audited(account: str) -> dict[str, Any]:
    assert check_account(*runtime.container().statements.partition(account)) == []
    return balance(account)


def hourly() -> dict[str, int]:
    result: dict[str, int] = load_function("refresh").lambda_handler(event("scheduler_sweep"), Context())
    return result


def entries(account: str) -> list[tuple[str, str, int]]:
    _, records, _ = runtime.container().statements.partition(account)
    return [(r.kind, r.pool, r.amount) for r in records]


def test_a_subscription_creates_upgrades_renews_once_cancels_and_lapses(billing, service):
    clock = service
    sub = Sub("sub_1", "cus_1", "acme", ANCHOR)
    end = month_after(ANCHOR)
    assert outcome(sub.event("customer.subscription.created", "price_starter", period_end=end)) == "applied"
    after = audited("acme")
    assert (after["plan"], after["included"]["available"], after["included"]["period_start"]) == (
        "starter",
        50,
        "2026-11-10",
    )
    # The SaaS's customer is the account's: checkouts, card setup and recharges use it.
    assert runtime.container().ledger.get_account("acme").auto_recharge.customer_id == "cus_1"
    adjust("purchased:AU", 300, account="acme")

    # Upgrade mid-period: the difference now (75 - 50), once however often the event comes.
    upgraded = sub.event("customer.subscription.updated", "price_essentials", period_end=end)
    assert outcome(upgraded) == "applied"
    assert outcome(upgraded) == "stale"
    assert audited("acme")["included"]["available"] == 75

    # A downgrade waits for the refresh.
    assert outcome(sub.event("customer.subscription.updated", "price_starter", period_end=end)) == "applied"
    after = audited("acme")
    assert (after["plan"], after["pending_plan"], after["included"]["available"]) == (
        "essentials",
        "starter",
        75,
    )

    # Renewal: invoice.paid refreshes at once; the hourly backstop finds nothing to do; a repeat changes nothing.
    clock.now = end + timedelta(minutes=5)
    assert outcome(sub.invoice(end)) == "refreshed"
    assert hourly()["refreshed"] == 0
    assert outcome(sub.invoice(end)) == "already_refreshed"
    after = audited("acme")
    assert (after["plan"], after["included"]["available"], after["included"]["period_start"]) == (
        "starter",
        50,
        "2026-12-10",
    )
    assert [
        i["detail"]["period_start"]
        for i in outbox_items(billing, TABLE)
        if i["detail_type"] == "allowance.refreshed" and i["detail"].get("account_id") == "acme"
    ] == ["2026-12-10"]

    # Cancellation at period end: the allowance stays to the end of the period, then lapses; purchased stays.
    next_end = month_after(end)
    assert (
        outcome(sub.event("customer.subscription.updated", "price_starter", period_end=next_end, cancel=True))
        == "applied"
    )
    clock.now = next_end + timedelta(hours=1)
    assert (
        outcome(sub.event("customer.subscription.deleted", "price_starter", period_end=next_end)) == "applied"
    )
    assert hourly()["refreshed"] == 1
    after = audited("acme")
    assert (after["included"]["available"], after["included"]["allowance"], after["purchased"]["AU"]) == (
        0,
        0,
        300,
    )
    assert entries("acme")[-1] == ("expiry", "included", -50)

    # Later months grant nothing.
    clock.now = month_after(next_end) + timedelta(hours=1)
    hourly()
    assert audited("acme")["included"]["available"] == 0

    # Reactivation: a new subscription grants its allowance now.
    again = Sub("sub_2", "cus_1", "acme", clock.now)
    assert (
        outcome(
            again.event("customer.subscription.created", "price_growth", period_end=month_after(clock.now))
        )
        == "applied"
    )
    after = audited("acme")
    assert (after["plan"], after["included"]["available"], after["purchased"]["AU"]) == ("growth", 100, 300)
    # The old subscription's late event changes nothing.
    assert (
        outcome(sub.event("customer.subscription.deleted", "price_starter", period_end=next_end)) == "stale"
    )
    assert audited("acme")["included"]["available"] == 100


def test_the_hourly_refresh_first_then_invoice_paid_grants_once(billing, service):
    clock = service
    sub = Sub("sub_h", "cus_h", "hourly-first", ANCHOR)
    end = month_after(ANCHOR)
    outcome(sub.event("customer.subscription.created", "price_growth", period_end=end))
    clock.now = end + timedelta(minutes=1)
    assert hourly()["refreshed"] == 1
    assert outcome(sub.invoice(end)) == "already_refreshed"
    assert [kind for kind, _, _ in entries("hourly-first")].count("grant") == 2  # creation, one refresh
    audited("hourly-first")


def test_an_older_event_never_overwrites_a_newer_state(billing, service):
    sub = Sub("sub_o", "cus_o", "ordered", ANCHOR)
    end = month_after(ANCHOR)
    created = sub.event("customer.subscription.created", "price_starter", period_end=end)
    to_growth = sub.event("customer.subscription.updated", "price_growth", period_end=end)
    to_essentials = sub.event(
        "customer.subscription.updated", "price_essentials", period_end=end, cancel=True
    )
    assert outcome(created) == "applied"
    assert outcome(to_essentials) == "applied"  # the newer state arrives first
    assert outcome(to_growth) == "stale"  # the older upgrade changes nothing
    account = runtime.container().ledger.get_account("ordered")
    assert (account.plan, account.allowance, account.pools["included"]) == ("essentials", 75, 75)
    assert account.subscription is not None and account.subscription.ends_at == end.date()
    audited("ordered")


def test_an_unknown_price_is_recorded_never_guessed(billing, service, caplog):
    create("known", billing_anchor="2026-11-10")
    runtime.container().customers.link("cus_k", "known")
    sub = Sub("sub_k", "cus_k", None, ANCHOR)
    assert (
        outcome(sub.event("customer.subscription.created", "price_mystery", period_end=month_after(ANCHOR)))
        == "applied"
    )
    account = runtime.container().ledger.get_account("known")
    assert account.plan == "starter" and account.allowance == 50
    assert account.subscription is not None and account.subscription.price_id == "price_mystery"
    assert account.subscription.plan is None
    assert "subscription price is not in PLAN_PRICES" in caplog.text


def test_a_subscription_of_an_unknown_customer_without_an_account_id_changes_nothing(billing, service):
    sub = Sub("sub_u", "cus_u", None, ANCHOR)
    assert (
        outcome(sub.event("customer.subscription.created", "price_growth", period_end=month_after(ANCHOR)))
        == "unknown_customer"
    )
    assert outcome(sub.invoice(ANCHOR, "subscription_create")) == "unknown_customer"


def test_a_linked_customer_s_subscription_sets_the_anchor_and_the_next_refresh(billing, service):
    create("linked", billing_anchor="2026-11-01")
    runtime.container().customers.link("cus_l", "linked")
    sub = Sub("sub_l", "cus_l", None, ANCHOR)
    outcome(sub.event("customer.subscription.created", "price_growth", period_end=month_after(ANCHOR)))
    account = runtime.container().ledger.get_account("linked")
    assert account.billing_anchor == date(2026, 11, 10)
    # The period that began on the 10th is due now: the hourly run or invoice.paid grants it, once.
    assert account.next_refresh_at == datetime(2026, 11, 10, tzinfo=UTC)
    assert outcome(sub.invoice(ANCHOR, "subscription_create")) == "refreshed"
    assert hourly()["refreshed"] == 0
    after = audited("linked")
    assert (after["plan"], after["included"]["available"], after["included"]["period_start"]) == (
        "growth",
        100,
        "2026-11-10",
    )


def test_a_malformed_subscription_is_a_400_and_writes_nothing(billing, service):
    body = Sub("sub_m", "cus_m", "malformed", ANCHOR).event(
        "customer.subscription.created", "price_growth", period_end=month_after(ANCHOR)
    )
    del body["data"]["object"]["billing_cycle_anchor"]
    status, answer = deliver(json.dumps(body))
    assert status == 400, answer
    assert runtime.container().customers.account_for("cus_m") is None


def test_concurrent_deliveries_of_a_subscription_s_events_keep_the_newest_state_and_grant_once(
    billing, service, dynamo_fidelity
):
    """Four events delivered twice each at once, on a DynamoDB that collides as AWS does (the fidelity layer)."""
    sub = Sub("sub_c", "cus_c", "racing", ANCHOR)
    end = month_after(ANCHOR)
    assert outcome(sub.event("customer.subscription.created", "price_starter", period_end=end)) == "applied"
    bodies = [sub.event("customer.subscription.updated", "price_growth", period_end=end) for _ in range(3)]
    bodies += [sub.event("customer.subscription.updated", "price_essentials", period_end=end)]  # the newest
    results: list[str] = []

    def run(body: dict[str, Any]) -> None:
        for _ in range(2):  # each delivered twice
            results.append(outcome(body))

    threads = [threading.Thread(target=run, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    account = runtime.container().ledger.get_account("racing")
    # Whatever the order, the newest state (essentials) is kept and no upgrade was granted twice: at most the
    # growth difference (50) once, then essentials is a downgrade waiting; or essentials' 25 once.
    assert account.subscription is not None and account.subscription.price_id == "price_essentials"
    assert (account.plan, account.pending_plan, account.pools["included"]) in (
        ("essentials", None, 75),
        ("growth", "essentials", 100),
    )
    audited("racing")


@pytest.mark.parametrize("kind", ["memory", "dynamo"])
def test_a_customer_stays_linked_to_its_first_account(kind: str, request: pytest.FixtureRequest):
    customers: Any = (
        InMemoryCustomers()
        if kind == "memory"
        else DynamoCustomers(TABLE, client=request.getfixturevalue("dynamodb"))
    )
    assert customers.account_for("cus_1") is None
    assert customers.link("cus_1", "first") == "first"
    assert customers.link("cus_1", "second") == "first"  # a later claim never moves it
    assert customers.account_for("cus_1") == "first"


def test_un_canceling_before_the_period_ends_keeps_the_allowance(billing, service):
    clock = service
    sub = Sub("sub_un", "cus_un", "undecided", ANCHOR)
    end = month_after(ANCHOR)
    outcome(sub.event("customer.subscription.created", "price_growth", period_end=end))
    outcome(sub.event("customer.subscription.updated", "price_growth", period_end=end, cancel=True))
    outcome(sub.event("customer.subscription.updated", "price_growth", period_end=end, cancel=False))
    clock.now = end + timedelta(hours=1)
    assert hourly()["refreshed"] == 1
    after = audited("undecided")
    assert (after["included"]["available"], after["included"]["allowance"]) == (100, 100)
