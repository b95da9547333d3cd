"""DynamoDB faults at every write of the send, purchase, recharge, refresh and migration paths."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Clock
from tests.integration.conftest import FakeTwilioHttp
from tests.integration.stripe_support import FakeStripeHttp
from tests.reliability import support as S
from tests.reliability.conftest import FAULTS, FIGURES, FaultyClient, audit, credits_in


@dataclass
class World:
    clock: Clock
    twilio: FakeTwilioHttp
    stripe: FakeStripeHttp


# ---- the paths: setup (no faults), action (faults armed), recovery (the service's own retries) ------------


def send_setup(w: World) -> list[str]:
    assert S.create()[0] == 201
    return ["acct-1"]


def send_action(w: World) -> list[tuple[int, Any]]:
    return [S.send("k1")]


def send_recover(w: World) -> None:
    S.send("k1")  # the client retries with the same Idempotency-Key
    S.deliver_all_callbacks(w.twilio)
    S.sweep(w.clock)


def purchase_setup(w: World) -> list[str]:
    assert S.create()[0] == 201
    return ["acct-1"]


def purchase_action(w: World) -> list[tuple[int, Any]]:
    answers = [S.checkout("c1")]
    if w.stripe.of("/v1/checkout/sessions"):  # the owner pays once Stripe made the session
        answers.append(S.webhook(S.paid_session(w.stripe)))
    return answers


def purchase_recover(w: World) -> None:
    assert S.checkout("c1")[0] == 201  # the client retries with the same Idempotency-Key
    assert S.webhook(S.paid_session(w.stripe))[0] == 200  # Stripe redelivers until it gets a 2xx


def recharge_setup(w: World) -> list[str]:
    assert S.create()[0] == 201
    S.card_on_file(w.stripe)
    assert S.adjust("acct-1", "included", -50, "drain-included")[0] == 200
    assert S.adjust("acct-1", "purchased:AU", -200, "drain-au")[0] == 200
    return ["acct-1"]


def recharge_action(w: World) -> list[tuple[int, Any]]:
    return [S.send("k1")]


def recharge_recover(w: World) -> None:
    S.recharge_webhooks(w.stripe)
    w.clock.advance(seconds=150)  # past the claim lease: a claim whose request died may be retried
    S.send("k1")
    S.deliver_all_callbacks(w.twilio)
    S.sweep(w.clock)


def refresh_setup(w: World) -> list[str]:
    for account in ("acct-1", "acct-2"):
        assert S.create(account)[0] == 201
        assert S.send(f"{account}-spend", account)[0] == 202
    w.clock.advance(days=25)  # 2026-12-05 12:00: both accounts are due
    return ["acct-1", "acct-2"]


def refresh_action(w: World) -> list[tuple[int, Any]]:
    return [(200, S.refresh())]


def refresh_recover(w: World) -> None:
    w.clock.advance(hours=1)
    S.refresh()  # the next hourly run catches up what failed


def migration_setup(w: World) -> list[str]:
    assert S.create("legacy-1", created_at="2025-03-01T00:00:00Z", billing_anchor="2025-03-01")[0] == 201
    assert S.adjust("legacy-1", "legacy", 30, "legacy-extra")[0] == 200
    return ["legacy-1"]


def migration_action(w: World) -> list[tuple[int, Any]]:
    return [S.migrate("legacy-1")]


def migration_recover(w: World) -> None:
    assert S.migrate("legacy-1")[0] == 200  # support retries


Step = Callable[[World], Any]
PATHS: dict[str, tuple[Step, Step, Step, int]] = {
    # path: (setup, action, recovery, writes the fault-free action makes)
    "send": (send_setup, send_action, send_recover, 2),  # reserve, post
    # order, its session, customer id, grant
    "purchase": (purchase_setup, purchase_action, purchase_recover, 4),
    "recharge": (recharge_setup, recharge_action, recharge_recover, 4),  # claim, grant, reserve, post
    "refresh": (refresh_setup, refresh_action, refresh_recover, 2),  # one reset per account
    "migration": (migration_setup, migration_action, migration_recover, 1),
}
CASES = [(path, fault, at) for path, spec in PATHS.items() for fault in FAULTS for at in range(spec[3])]


def run(path: str, w: World, faulty: FaultyClient, fault: str | None, at: int) -> dict[str, Any]:
    setup, action, recover, writes = PATHS[path]
    accounts = setup(w)
    if fault:
        faulty.arm(fault, at)
    else:
        faulty.arm("none", -1)
    answers = action(w)
    for status, answer in answers:
        assert status < 400 or set(answer) == {"error"}, answer  # a clean failure: the error shape
    if fault:
        assert faulty.injected >= 1, f"write {at} of {path} never happened"
    else:
        assert faulty.writes == writes, f"{path} made {faulty.writes} writes, expected {writes}"
    faulty.calm()
    recover(w)
    state = audit(accounts)
    return {
        "balances": state,
        "twilio_sends": len(w.twilio.sent),
        "stripe_charges": len(w.stripe.charges),
        "credits": credits_in(state),
        "injected": faulty.injected,
        "events": {kind: len(S.published(kind)) for kind in EVENTS},
        "answers": [(status, _outcome(answer)) for status, answer in answers],
    }


def _outcome(answer: Any) -> str:
    if isinstance(answer, dict) and "error" in answer:
        return str(answer["error"]["code"])
    if isinstance(answer, dict):
        return str(answer.get("status") or answer.get("outcome") or answer.get("failed", ""))
    return ""


EVENTS = ("pack.purchased", "recharge.succeeded", "allowance.refreshed")
BASELINES: dict[str, dict[str, Any]] = {}
ANSWERS: list[str] = []  # cases whose first answer differed from the fault-free one (a clean failure)


@pytest.mark.parametrize("path", list(PATHS))
def test_fault_free_baseline(
    path: str, service: Clock, twilio: FakeTwilioHttp, stripe_api: FakeStripeHttp, faulty: FaultyClient
) -> None:
    result = run(path, World(service, twilio, stripe_api), faulty, None, -1)
    BASELINES[path] = result
    FIGURES["1 dynamodb faults"]["baseline runs"] += 1


@pytest.mark.parametrize(("path", "fault", "at"), CASES, ids=[f"{p}-{f}-w{a}" for p, f, a in CASES])
def test_fault_at_every_write_changes_nothing(
    path: str,
    fault: str,
    at: int,
    service: Clock,
    twilio: FakeTwilioHttp,
    stripe_api: FakeStripeHttp,
    faulty: FaultyClient,
) -> None:
    """Each fault either retries safely or fails cleanly; after the service's own recovery (client retry with
    the same key, Stripe redelivery, Twilio callback, sweeper, next refresh run, support retry) the ledger
    check passes and every balance equals the fault-free run's."""
    result = run(path, World(service, twilio, stripe_api), faulty, fault, at)
    expected = BASELINES.get(path)
    if expected is None:
        pytest.fail("run the baseline first (the module runs in file order)")
    for key in ("balances", "twilio_sends", "stripe_charges"):
        assert result[key] == expected[key], (key, result[key], expected[key])
    if fault != "storm":
        # A single fault is absorbed by the store's retries: the caller gets the fault-free answer.
        assert result["answers"] == expected["answers"]
        assert result["events"] == expected["events"]
    if result["answers"] != expected["answers"]:
        ANSWERS.append(f"{path} {fault} w{at}: {result['answers']} (fault-free {expected['answers']})")
    figures = FIGURES["1 dynamodb faults"]
    figures["cases"] += 1
    figures["faults injected"] += result["injected"]
    figures["credits checked"] += result["credits"]


def test_report_clean_failures() -> None:
    """Lists the cases whose first answer was a clean failure rather than the fault-free answer."""
    print("\n".join(ANSWERS))
    FIGURES["1 dynamodb faults"]["clean failures"] = len(ANSWERS)
