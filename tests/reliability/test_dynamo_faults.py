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
    "send": (send_setup, send_action, send_recover, 3),  # reserve, dispatch mark, post
    # order, its session, customer id, grant
    "purchase": (purchase_setup, purchase_action, purchase_recover, 4),
    "recharge": (recharge_setup, recharge_action, recharge_recover, 5),  # claim, grant, reserve, mark, post
    "refresh": (refresh_setup, refresh_action, refresh_recover, 2),  # one reset per account
    "migration": (migration_setup, migration_action, migration_recover, 1),
}
# Throttling takes the store's branch of provisioned throughput, a timeout before the call the branch of one
# after it (minus the landed write): make pr runs one fault per branch, make test all of them.
SAME_BRANCH_AS_ANOTHER = {"throttling", "timeout_before"}
CASES = [
    pytest.param(
        path,
        fault,
        at,
        id=f"{path}-{fault}-w{at}",
        marks=pytest.mark.slow if fault in SAME_BRANCH_AS_ANOTHER else (),
    )
    for path, spec in PATHS.items()
    for fault in FAULTS
    for at in range(spec[3])
]


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
        "balances": {
            account: {"pools": {pool: n for pool, n in s["pools"].items() if n}, "held": s["held"]}
            for account, s in state.items()
        },
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
NONE = dict.fromkeys(EVENTS, 0)
# The fault-free run of each path, derived from the rules (starter plan: 50 included credits; a pack is 100
# credits; "Hello" is one segment), so that any case runs alone and compares against fixed figures.
FAULT_FREE: dict[str, dict[str, Any]] = {
    # 50 included, one segment sent from it.
    "send": {
        "balances": {"acct-1": {"pools": {"included": 49}, "held": 0}},
        "twilio_sends": 1,
        "stripe_charges": 0,
        "events": NONE,
        "answers": [(202, "sent")],
    },
    # Checkout for 2 AU packs, then the webhook grants them once.
    "purchase": {
        "balances": {"acct-1": {"pools": {"included": 50, "purchased:AU": 200}, "held": 0}},
        "twilio_sends": 0,
        "stripe_charges": 0,
        "events": {**NONE, "pack.purchased": 1},
        "answers": [(201, ""), (200, "granted")],
    },
    # Drained to zero after a 2-pack purchase; the send at zero buys one pack (100) and spends one of it.
    "recharge": {
        "balances": {"acct-1": {"pools": {"purchased:AU": 99}, "held": 0}},
        "twilio_sends": 1,
        "stripe_charges": 1,
        "events": {**NONE, "pack.purchased": 1, "recharge.succeeded": 1},
        "answers": [(202, "sent")],
    },
    # Each account spent one credit; the new period drops the leftover and grants 50 again, once each.
    "refresh": {
        "balances": {
            "acct-1": {"pools": {"included": 50}, "held": 0},
            "acct-2": {"pools": {"included": 50}, "held": 0},
        },
        "twilio_sends": 2,
        "stripe_charges": 0,
        "events": {**NONE, "allowance.refreshed": 2},
        "answers": [(200, "0")],  # no account failed
    },
    # 50 legacy credits of the old plan plus 30 adjusted in become 80 AU credits.
    "migration": {
        "balances": {"legacy-1": {"pools": {"purchased:AU": 80}, "held": 0}},
        "twilio_sends": 0,
        "stripe_charges": 0,
        "events": NONE,
        "answers": [(200, "migrated")],
    },
}
# What a storm (every write failing until the action gives up) may answer instead: a clean, retryable
# failure with the error shape, or for the refresh run the number of accounts that failed.
CLEAN_FAILURES: dict[str, set[tuple[int, str]]] = {
    "send": {(429, "busy"), (202, "pending")},  # pending: Twilio took it, the post waits for its callback
    "purchase": {(429, "busy")},
    "recharge": {(429, "busy"), (402, "insufficient_credits"), (202, "pending")},
    "refresh": {(200, "1"), (200, "2")},
    "migration": {(429, "busy")},
}


@pytest.mark.parametrize("path", list(PATHS))
def test_fault_free_run_matches_the_rules(
    path: str, service: Clock, twilio: FakeTwilioHttp, stripe_api: FakeStripeHttp, faulty: FaultyClient
) -> None:
    result = run(path, World(service, twilio, stripe_api), faulty, None, -1)
    assert {key: result[key] for key in FAULT_FREE[path]} == FAULT_FREE[path]
    FIGURES["1 dynamodb faults"]["baseline runs"] += 1


@pytest.mark.parametrize(("path", "fault", "at"), CASES)
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
    expected = FAULT_FREE[path]
    for key in ("balances", "twilio_sends", "stripe_charges"):
        assert result[key] == expected[key], (key, result[key], expected[key])
    figures = FIGURES["1 dynamodb faults"]
    if fault != "storm":
        # A single fault is absorbed by the store's retries: the caller gets the fault-free answer.
        assert result["answers"] == expected["answers"]
        assert result["events"] == expected["events"]
    elif result["answers"] != expected["answers"]:
        # A storm may stop the action early (no session, so the owner cannot pay): fewer answers, never more.
        assert 1 <= len(result["answers"]) <= len(expected["answers"]), result["answers"]
        for answer, fault_free in zip(result["answers"], expected["answers"], strict=False):
            assert answer == fault_free or answer in CLEAN_FAILURES[path], answer
        figures["clean failures"] += 1
    figures["cases"] += 1
    figures["faults injected"] += result["injected"]
    figures["credits checked"] += result["credits"]
