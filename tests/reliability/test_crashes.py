"""A crash between every two steps of the send, recharge, refresh and migration paths, then recovery."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from smscredits import runtime
from smscredits.domain import movements
from smscredits.services import legacy, orders, purchases, recharge, refresh, sending
from tests.conftest import Clock
from tests.integration.conftest import FakeTwilioHttp
from tests.integration.stripe_support import FakeStripeHttp
from tests.reliability import support as S
from tests.reliability.conftest import FIGURES, OUTCOMES, Crash, audit, credits_in, once


def crash_at(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
    monkeypatch.setattr(owner, name, once(Crash(f"crash at {name}"), getattr(owner, name)))


def attempt(action: Callable[[], Any]) -> str:
    """Runs the action that must crash: one that completes means the crash point is no longer on its path."""
    try:
        action()
    except Crash:
        return "crashed"
    pytest.fail("the action completed: the patched crash point was never reached")


# step: (path, patch target, attribute, crash-free included/purchased credits, outcome when it differs)
SEND_STEPS: dict[str, tuple[Any, str]] = {
    "after the hold, before Twilio": (sending, "status_callback_url"),
    "after Twilio, before post": (None, "post"),  # the functions' ledger
    "after post, before the answer": (sending, "result_of"),
}


@pytest.mark.parametrize("step", list(SEND_STEPS))
@pytest.mark.parametrize("callback", ["comes", "never"])
def test_send_crashes(
    step: str, callback: str, service: Clock, twilio: FakeTwilioHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert S.create()[0] == 201
    owner, name = SEND_STEPS[step]
    crash_at(monkeypatch, owner or runtime.container().ledger, name)
    first = attempt(lambda: S.send("k1"))
    status, _ = S.send("k1")  # the client retries; never a second send
    assert status == 202
    if callback == "comes":
        S.deliver_all_callbacks(twilio)
    S.sweep(service)
    state = audit(["acct-1"])
    assert len(twilio.sent) <= 1
    included = state["acct-1"]["pools"]["included"]
    if included == 49:
        outcome = "equal to crash-free (1 sent, 1 charged)"
    elif twilio.sent:
        outcome = "conservative: sent, not charged (sweeper refunded)"
    else:
        outcome = "conservative: not sent, credits returned"
    assert included in (49, 50)
    assert not (included == 49 and not twilio.sent)  # charged only for what went out
    # Each event exactly once, written with the movement: message.sent with the post, message.failed with
    # the void that returned the credits.
    sent, failed = len(S.published("message.sent")), len(S.published("message.failed"))
    assert (sent, failed) == ((1, 0) if included == 49 else (0, 1))
    OUTCOMES.append(("send", f"{step} (callback {callback})", f"{first}; {outcome}"))
    FIGURES["4 crashes"]["cases"] += 1
    FIGURES["4 crashes"]["credits checked"] += credits_in(state)


CHECKOUT_STEPS = {
    "after the order, before Stripe": (None, "create_checkout_session"),
    "after Stripe, before the session is recorded": (orders, "record_session"),
    "after the session is recorded, before the answer": (purchases, "remember_customer"),
}


@pytest.mark.parametrize("step", list(CHECKOUT_STEPS))
def test_checkout_crashes(
    step: str,
    service: Clock,
    twilio: FakeTwilioHttp,
    stripe_api: FakeStripeHttp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The order is written before Stripe is asked: whatever step the checkout dies at, the client's retry with
    the same key answers the one session Stripe made, and paying it grants once."""
    assert S.create()[0] == 201
    owner, name = CHECKOUT_STEPS[step]
    crash_at(monkeypatch, owner or runtime.container().payments, name)
    first = attempt(lambda: S.checkout("c1"))
    status, answer = S.checkout("c1")
    assert status == 201, answer
    assert S.webhook(S.paid_session(stripe_api))[1]["outcome"] == "granted"
    made = {
        json.loads(stripe_api.answer(r["idempotency_key"]))["id"]
        for r in stripe_api.of("/v1/checkout/sessions")
    }
    assert made == {answer["session_id"]}
    state = audit(["acct-1"])
    assert state["acct-1"]["pools"]["purchased:AU"] == 200
    OUTCOMES.append(("checkout", step, f"{first}; equal to crash-free (1 session, 200 granted)"))
    FIGURES["4 crashes"]["cases"] += 1
    FIGURES["4 crashes"]["credits checked"] += credits_in(state)


RECHARGE_STEPS = {
    "after claim, before the charge": "charge_off_session",
    "after the charge, before the grant": "settle_success",
    "after the grant (same write as the claim release)": "count",
}


@pytest.mark.parametrize("step", list(RECHARGE_STEPS))
def test_recharge_crashes(
    step: str,
    service: Clock,
    twilio: FakeTwilioHttp,
    stripe_api: FakeStripeHttp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recharge, "WAIT_SECONDS", 0.001)
    assert S.create()[0] == 201
    S.card_on_file(stripe_api)
    assert S.adjust("acct-1", "included", -50, "drain-included")[0] == 200
    assert S.adjust("acct-1", "purchased:AU", -200, "drain-au")[0] == 200
    name = RECHARGE_STEPS[step]
    if name == "charge_off_session":
        from smscredits import runtime

        payments = runtime.container().payments
        crash_at(monkeypatch, payments, name)
    else:
        crash_at(monkeypatch, recharge, name)
    first = attempt(lambda: S.send("k1"))
    # Recovery: Stripe's webhook for every PaymentIntent it created, the claim lease runs out, the client retries.
    S.recharge_webhooks(stripe_api)
    service.advance(seconds=150)
    status, answer = S.send("k1")
    assert status == 202 and answer["status"] == "sent", answer
    S.deliver_all_callbacks(twilio)
    S.sweep(service)
    state = audit(["acct-1"])
    assert state["acct-1"]["pools"]["purchased:AU"] == 99  # one pack bought, one credit spent
    assert len({c["idempotency_key"] for c in stripe_api.charges}) == 1 and len(twilio.sent) == 1
    assert len(S.published("recharge.succeeded")) == 1  # written with the grant: never lost, never doubled
    OUTCOMES.append(("recharge", step, f"{first}; equal to crash-free (1 charge, 100 granted, 1 sent)"))
    FIGURES["4 crashes"]["cases"] += 1
    FIGURES["4 crashes"]["credits checked"] += credits_in(state)


REFRESH_STEPS = {
    "between accounts": (refresh, "refresh_account", 1),
    "after the refresh's write, before its answer": (refresh, "count", 0),
}


@pytest.mark.parametrize("step", list(REFRESH_STEPS))
def test_refresh_crashes(
    step: str, service: Clock, twilio: FakeTwilioHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = ["acct-1", "acct-2"]
    for account in accounts:
        assert S.create(account)[0] == 201
        assert S.send(f"{account}-spend", account)[0] == 202
    service.advance(days=25)
    owner, name, skip = REFRESH_STEPS[step]
    original = getattr(owner, name)
    calls = {"n": 0}

    def step_fn(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == skip + 1:
            raise Crash(step)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, step_fn)
    first = attempt(S.refresh)
    service.advance(hours=1)
    S.refresh()
    state = audit(accounts)
    assert all(s["pools"]["included"] == 50 for s in state.values())
    # allowance.refreshed is written with the refresh: once per account, whatever step the crash hit.
    assert sorted(e["account_id"] for e in S.published("allowance.refreshed")) == accounts
    outcome = "equal to crash-free (each account reset once, allowance.refreshed once each)"
    OUTCOMES.append(("refresh", step, f"{first}; {outcome}"))
    FIGURES["4 crashes"]["cases"] += 1
    FIGURES["4 crashes"]["credits checked"] += credits_in(state)


MIGRATION_STEPS = {
    "before the write": (movements, "migrated_pools"),
    "after the write, before the answer": (legacy, "answer"),
}


@pytest.mark.parametrize("step", list(MIGRATION_STEPS))
def test_migration_crashes(
    step: str, service: Clock, twilio: FakeTwilioHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert S.create("legacy-1", created_at="2025-03-01T00:00:00Z", billing_anchor="2025-03-01")[0] == 201
    assert S.adjust("legacy-1", "legacy", 30, "extra")[0] == 200
    owner, name = MIGRATION_STEPS[step]
    crash_at(monkeypatch, owner, name)
    first = attempt(lambda: S.migrate("legacy-1"))
    status, answer = S.migrate("legacy-1")  # support retries
    assert status == 200, answer
    state = audit(["legacy-1"])
    assert state["legacy-1"]["pools"] == {
        "included": 0,
        "purchased:AU": 80,
        "purchased:US": 0,
        "purchased:GB": 0,
        "purchased:NZ": 0,
    }
    OUTCOMES.append(("migration", step, f"{first}; equal to crash-free (80 legacy → 80 AU, once)"))
    FIGURES["4 crashes"]["cases"] += 1
    FIGURES["4 crashes"]["credits checked"] += credits_in(state)
