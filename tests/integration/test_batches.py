"""Batches end to end through their use cases (docs/product.md §8b), on both ledgers: the quote, the one
reservation, dispatch through the queue, callbacks, settlements, cancel, idempotency and the 402."""

from __future__ import annotations

from typing import Any

import pytest

from smscredits.domain import batches as B
from smscredits.domain.errors import IdempotencyKeyReused, InsufficientCredits
from tests.batches_support import Run, StandInTwilio, au, us
from tests.conftest import Clock, new_account
from tests.ledgers import buy

ACCT = "acct-b"


def funded(kind: str, request: pytest.FixtureRequest, clock: Clock) -> Run:
    dynamodb = request.getfixturevalue("dynamodb") if kind == "dynamo" else None
    harness = Run(kind, clock, dynamodb)
    harness.ledger.create_account(new_account(ACCT, plan="starter", now=clock.now), reference={})
    buy(harness.ledger, ACCT, region="AU", packs=10, order_id="cs_au", payment_intent="pi_au")
    buy(harness.ledger, ACCT, region="US", packs=5, order_id="cs_us", payment_intent="pi_us")
    return harness


@pytest.fixture(params=["memory", "dynamo"])
def run(request: pytest.FixtureRequest, clock: Clock) -> Run:
    return funded(request.param, request, clock)


def thousand() -> tuple[list[B.Entry], set[int], set[int]]:
    """1,000 entries: every 50th from 7 a bad number, every 97th from 3 an empty body, every 40th from 5 the
    previous entry's recipient again (written differently), a third to the US; returns the invalid and
    duplicate indexes."""
    entries: list[B.Entry] = []
    invalid, duplicates = set(), set()
    for i in range(1000):
        to = us(i) if i % 3 == 0 else au(i)
        body = "Your appointment is tomorrow at 10:00. Reply STOP to opt out." if i % 2 else "Hi ✓ see you"
        if i % 50 == 7:
            to = "+1"
            invalid.add(i)
        elif i % 97 == 3:
            body = "   "
            invalid.add(i)
        elif i % 40 == 5 and (i - 1) % 50 != 7 and (i - 1) % 97 != 3:
            previous = entries[i - 1].to
            to = previous[:3] + " " + previous[3:]  # the same number after normalisation
            duplicates.add(i)
        entries.append(B.Entry(to, body, f"ref-{i}"))
    return entries, invalid, duplicates


# About 1,300 DynamoDB requests (1,000 of them the callbacks): slow on moto, so in `make test` only.
@pytest.mark.parametrize("kind", ["memory", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_a_thousand_message_batch_reserves_the_quote_and_settles_it_exactly(
    kind: str, request: pytest.FixtureRequest, clock: Clock
) -> None:
    run = funded(kind, request, clock)
    entries, invalid, duplicates = thousand()
    before = run.sound(ACCT)
    quote = run.quote(ACCT, entries)
    assert {item["index"] for item in quote["invalid"]} == invalid
    assert {item["index"] for item in quote["duplicates"]} == duplicates
    assert quote["valid"] == 1000 - len(invalid) - len(duplicates)
    assert quote["affordable"] and quote["shortfall"] == {}
    assert run.sound(ACCT) == before  # a quote moves nothing

    created = run.create(ACCT, "campaign-1", entries)
    assert created["accepted"] == quote["valid"]
    assert {r["index"] for r in created["rejected"]} == invalid | duplicates
    assert created["credits_held"] == quote["credits"]
    assert created["funding"] == quote["funding"]
    held = run.sound(ACCT)
    assert held.held == quote["credits"]
    assert sum(before.pools.values()) - sum(held.pools.values()) == quote["credits"]

    valid = [e for i, e in enumerate(entries) if i not in invalid | duplicates]
    refused = frozenset(e.to for e in valid[::25])  # Twilio refuses these (4xx): returned
    busy = frozenset(e.to for e in valid[1::30])  # 429 once: sent later, once
    twilio = StandInTwilio(refuse=refused, busy=busy)
    run.drain(twilio)
    assert len(twilio.sent) == len(valid) - len(refused)
    assert len({to for to, _, _ in twilio.sent}) == len(twilio.sent)  # nobody got two

    failed = {to for to, _, _ in twilio.sent[::7]}  # Twilio reports these failed: returned
    undelivered = {to for to, _, _ in twilio.sent[3::11]} - failed  # stays charged
    run.deliver(
        twilio, lambda to: "failed" if to in failed else "undelivered" if to in undelivered else "delivered"
    )
    run.drain(twilio)  # the settle job
    batch = run.ledger.get_batch(ACCT, created["batch_id"])
    assert batch.status == "completed"

    credits = {to: m.credits for m in _planned(run, entries) for to in [m.to]}
    returned = sum(credits[to] for to in failed) + sum(credits[e.to] for e in valid if e.to in refused)
    assert batch.returned == returned
    assert batch.posted + batch.returned == quote["credits"]
    after = run.sound(ACCT)
    assert after.held == 0
    assert sum(before.pools.values()) - sum(after.pools.values()) == batch.posted
    completed = run.completed()
    assert len(completed) == 1 and completed[0]["credits"]["posted"] == batch.posted
    assert batch.settlements <= 20


def _planned(run: Run, entries: list[B.Entry]) -> list[B.Planned]:
    from smscredits.services import batches

    return list(batches.plan(run.ledger.get_account(ACCT), entries, run.ledger.legacy_rates).valid)


def test_the_same_key_and_body_answer_the_same_batch_and_reserve_once(run: Run) -> None:
    entries = [B.Entry(au(i), "hello") for i in range(30)]
    first = run.create(ACCT, "k1", entries)
    jobs = len(run.queue.jobs)
    again = run.create(ACCT, "k1", entries)
    assert again["batch_id"] == first["batch_id"] and again["credits_held"] == first["credits_held"]
    assert len(run.queue.jobs) == jobs  # nothing queued twice
    assert run.sound(ACCT).held == 30
    with pytest.raises(IdempotencyKeyReused):
        run.create(ACCT, "k1", entries[:-1])


def test_a_short_batch_is_refused_with_the_shortfall_per_region_and_reserves_nothing(run: Run) -> None:
    entries = [B.Entry(us(i), "hello") for i in range(600)]  # 500 US credits + the included ones
    account = run.sound(ACCT)
    quote = run.quote(ACCT, entries)
    assert not quote["affordable"]
    short = 600 - account.pools["purchased:US"] - account.pools["included"]
    assert quote["shortfall"] == {"US": short}
    with pytest.raises(InsufficientCredits) as refused:
        run.create(ACCT, "big", entries)
    assert refused.value.details["shortfall"] == {"US": short}
    assert run.sound(ACCT) == account
    assert run.queue.jobs == []


def test_cancel_mid_batch_returns_the_unsent_messages_once(run: Run) -> None:
    entries = [B.Entry(au(i), "hello") for i in range(100)]
    created = run.create(ACCT, "c1", entries)
    twilio = StandInTwilio()
    jobs = run.queue.take()
    for job in jobs[:3]:  # three slices leave before the cancel
        run.handle(job, twilio)
    first = run.ledger.cancel_batch(ACCT, created["batch_id"])
    from smscredits.services import batches

    answer = batches.cancel(run.ledger, run.queue, ACCT, created["batch_id"])
    assert first[1] is True and answer["cancelled"] is False  # the second cancel changes nothing
    run.queue.send([(job, 0) for job in jobs[3:]])
    run.queue.send([({"kind": "cancel", "account_id": ACCT, "batch_id": created["batch_id"]}, 0)])
    run.drain(twilio)
    assert len(twilio.sent) == 30  # nothing after the cancel
    run.deliver(twilio, lambda to: "delivered")
    run.drain(twilio)
    batch, _ = run.settle(ACCT, created["batch_id"])
    assert batch.status == "cancelled"
    assert (batch.posted, batch.returned) == (30, 70)
    assert run.sound(ACCT).held == 0
    assert batch.settlements <= 3


def test_a_settlement_computed_twice_returns_each_credit_once(run: Run) -> None:
    entries = [B.Entry(au(i), "hello") for i in range(20)]
    created = run.create(ACCT, "s1", entries)
    twilio = StandInTwilio()
    run.drain(twilio, only=lambda job: job["kind"] == "slice")
    run.deliver(twilio, lambda to: "failed")
    pools = run.sound(ACCT).pools
    stale = run.ledger.get_batch(ACCT, created["batch_id"])
    run.settle(ACCT, created["batch_id"])
    run.settle(ACCT, created["batch_id"])
    # A settlement pinned to the count read before the first one is refused, then finds nothing to do.
    from smscredits.domain.changes import BatchSettlement

    assert isinstance(
        run.ledger._commit(
            ACCT,
            lambda state: B.settle(state, stale, {"AU": B.Settled(0, 20)}, now=run.clock(), complete=True),
        ).record,  # type: ignore[union-attr]
        BatchSettlement,
    )
    after = run.sound(ACCT)
    assert sum(after.pools.values()) - sum(pools.values()) == 20
    assert run.ledger.get_batch(ACCT, created["batch_id"]).returned == 20


def test_a_message_with_no_final_status_is_settled_at_the_grace_period(run: Run, clock: Clock) -> None:
    entries = [B.Entry(au(i), "hello") for i in range(10)]
    created = run.create(ACCT, "g1", entries)
    twilio = StandInTwilio()
    run.drain(twilio, only=lambda job: job["kind"] == "slice")
    run.deliver(twilio, lambda to: "sent")  # accepted, then nothing final
    batch, ended = run.settle(ACCT, created["batch_id"])
    assert not ended and batch.status == "open"
    clock.advance(seconds=3601)
    batch, ended = run.settle(ACCT, created["batch_id"])
    assert ended and (batch.posted, batch.returned) == (10, 0)  # Twilio accepted them: charged
    assert run.sound(ACCT).held == 0


def test_message_listing_masks_numbers_and_filters_by_status(run: Run) -> None:
    from smscredits.services import batches

    entries = [B.Entry(au(i), "hello", f"r{i}") for i in range(25)]
    created = run.create(ACCT, "m1", entries)
    twilio = StandInTwilio(refuse=frozenset({au(3)}))
    run.drain(twilio, only=lambda job: job["kind"] == "slice")
    page = batches.message_page(
        run.ledger, run.messages, ACCT, created["batch_id"], cursor=None, status=None, limit=10
    )
    assert [m["index"] for m in page["messages"]] == list(range(10))
    assert page["messages"][0]["to"] == "+61******000" and page["messages"][0]["ref"] == "r0"
    rest = batches.message_page(
        run.ledger,
        run.messages,
        ACCT,
        created["batch_id"],
        cursor=page["next_cursor"],
        status=None,
        limit=100,
    )
    assert [m["index"] for m in rest["messages"]] == list(range(10, 25)) and rest["next_cursor"] is None
    rejected = batches.message_page(
        run.ledger, run.messages, ACCT, created["batch_id"], cursor=None, status="rejected", limit=10
    )
    assert [m["index"] for m in rejected["messages"]] == [3]
    shown: dict[str, Any] = batches.view(run.ledger, run.messages, ACCT, created["batch_id"])
    assert shown["status"] == "sending" and shown["counts"] == {"sent": 24, "rejected": 1}


def test_a_failed_status_after_the_batch_completed_is_refunded_once(run: Run, clock: Clock) -> None:
    """Twilio accepted ten messages and said nothing final by the grace period: the completing settlement
    charged them. One then fails (its validity period ran out): its credits come back once, in one further
    settlement, and batch.completed stays the one written at completion."""
    entries = [B.Entry(au(i), "hello") for i in range(10)]
    created = run.create(ACCT, "late-1", entries)
    twilio = StandInTwilio()
    run.drain(twilio, only=lambda job: job["kind"] == "slice")
    run.deliver(twilio, lambda to: "sent")
    clock.advance(seconds=3601)
    batch, ended = run.settle(ACCT, created["batch_id"])
    assert ended and (batch.posted, batch.returned) == (10, 0)
    pools = run.sound(ACCT).pools

    late = {au(3)}
    for _ in range(2):  # Twilio's callback, and a repeat of it
        run.deliver(twilio, lambda to: "failed" if to in late else "sent")
        run.settle(ACCT, created["batch_id"])
    after = run.sound(ACCT)
    assert sum(after.pools.values()) - sum(pools.values()) == 1
    assert after.held == 0
    batch = run.ledger.get_batch(ACCT, created["batch_id"])
    assert batch.status == "completed" and batch.refunded == 1
    assert len(run.completed()) == 1


def test_a_failed_status_racing_the_completing_settlement_is_refunded_once(run: Run, clock: Clock) -> None:
    """The failure lands after the grace period's sweep read a message as accepted (so it is charged) but
    before the settlement is written: the completing settlement or the next one returns it, never both."""
    entries = [B.Entry(au(i), "hello") for i in range(10)]
    created = run.create(ACCT, "late-2", entries)
    twilio = StandInTwilio()
    run.drain(twilio, only=lambda job: job["kind"] == "slice")
    run.deliver(twilio, lambda to: "sent")
    pools = run.sound(ACCT).pools
    clock.advance(seconds=3601)
    counted = run.messages.all

    def all_then_fail(batch: B.Batch) -> Any:
        records = list(counted(batch))
        run.messages.all = counted  # type: ignore[method-assign]
        run.deliver(twilio, lambda to: "failed" if to == au(5) else "sent")
        return iter(records)

    sweep = run.messages.sweep

    def sweep_then_race(batch: B.Batch) -> int:
        marked = sweep(batch)
        run.messages.all = all_then_fail  # type: ignore[method-assign]
        return marked

    run.messages.sweep = sweep_then_race  # type: ignore[method-assign]
    batch, ended = run.settle(ACCT, created["batch_id"])
    assert ended and batch.refunded == 1  # counted again once it ended: the failure found the batch open
    run.deliver(twilio, lambda to: "failed" if to == au(5) else "sent")  # a repeat of the status
    run.settle(ACCT, created["batch_id"])
    after = run.sound(ACCT)
    assert sum(after.pools.values()) - sum(pools.values()) == 1
    assert after.held == 0
    batch = run.ledger.get_batch(ACCT, created["batch_id"])
    assert batch.posted - batch.refunded == 9
    assert len(run.completed()) == 1


def test_a_late_failure_whose_refund_did_not_land_is_refunded_when_its_status_comes_again(
    run: Run, clock: Clock
) -> None:
    """The status worker recorded the failure, then the refund's write failed (a busy balance): the queue
    delivers the status again, and although the record no longer moves, the refund is made, once."""
    from smscredits.domain.errors import Busy

    entries = [B.Entry(au(i), "hello") for i in range(10)]
    created = run.create(ACCT, "late-3", entries)
    twilio = StandInTwilio()
    run.drain(twilio, only=lambda job: job["kind"] == "slice")
    run.deliver(twilio, lambda to: "sent")
    clock.advance(seconds=3601)
    assert run.settle(ACCT, created["batch_id"])[1]
    pools = run.sound(ACCT).pools

    settle_batch = run.ledger.settle_batch

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise Busy("The account's balance is too busy right now; nothing was changed. Try again.")

    run.ledger.settle_batch = busy  # type: ignore[method-assign]
    with pytest.raises(Busy):
        run.deliver(twilio, lambda to: "failed" if to == au(2) else "sent")
    run.ledger.settle_batch = settle_batch  # type: ignore[method-assign]
    for _ in range(2):  # the queue's redelivery, then a duplicate
        run.deliver(twilio, lambda to: "failed" if to == au(2) else "sent")
    after = run.sound(ACCT)
    assert sum(after.pools.values()) - sum(pools.values()) == 1
    assert run.ledger.get_batch(ACCT, created["batch_id"]).refunded == 1


LOST = au(4)


def _lost_then_swept(run: Run, clock: Clock, key: str) -> tuple[str, StandInTwilio, int]:
    """Ten messages; Twilio took the one to LOST but its answer never came (left dispatching, never re-sent).
    The others are delivered; at the grace period the lost one is swept as returned and the batch completes.
    Returns the batch id, the stand-in and the credits of one message."""
    entries = [B.Entry(au(i), "hello") for i in range(10)]
    created = run.create(ACCT, key, entries)
    twilio = StandInTwilio(lost=frozenset({LOST}))
    run.drain(twilio, only=lambda job: job["kind"] == "slice")
    _deliver(run, twilio, "delivered", to=lambda to: to != LOST)
    return created["batch_id"], twilio, created["credits_held"] // 10


def _deliver(run: Run, twilio: StandInTwilio, status: str, *, to: Any) -> None:
    """`status` to the accepted messages whose recipient `to` chooses."""
    from smscredits.services import batches
    from tests.batches_support import callback_target

    for recipient, sid, url in twilio.sent:
        if to(recipient):
            account_id, batch_id, index = callback_target(url)
            batches.apply_callback(
                run.ledger,
                run.messages,
                account_id=account_id,
                batch_id=batch_id,
                index=index,
                status=status,
                sid=sid,
            )


def _late_charges(run: Run) -> list[tuple[str, int]]:
    _, entries, _ = run.statements.partition(ACCT)
    return [(entry.pool, entry.amount) for entry in entries if entry.kind == "late_charge"]


def test_a_charged_status_for_a_message_swept_as_returned_is_charged_late_once(
    run: Run, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lost message was swept as returned (Twilio never clearly took it); Twilio then reports it delivered,
    twice (a repeat): its credits are taken again once, as a late charge (counted as one), the batch shows it
    posted, and batch.completed stays the one written at completion."""
    from smscredits.adapters import batch_operations
    from smscredits.services import batches

    counted: list[tuple[str, int]] = []
    monkeypatch.setattr(batch_operations, "metric", lambda name, value=1: counted.append((name, value)))

    batch_id, twilio, each = _lost_then_swept(run, clock, "swept-1")
    clock.advance(seconds=3601)
    batch, ended = run.settle(ACCT, batch_id)
    assert ended and (batch.posted, batch.returned) == (9 * each, each)
    pools = run.sound(ACCT).pools

    for _ in range(2):  # Twilio's callback, and a repeat of it
        _deliver(run, twilio, "delivered", to=lambda to: to == LOST)
        run.settle(ACCT, batch_id)
    after = run.sound(ACCT)
    assert sum(pools.values()) - sum(after.pools.values()) == each
    assert after.held == 0 and after.pools.get("owed", 0) == 0
    assert sum(amount for _, amount in _late_charges(run)) == -each
    assert counted == [("LateCharges", 1), ("CreditsOwed", 0)]
    shown = batches.view(run.ledger, run.messages, ACCT, batch_id)
    assert shown["credits"] == {"held": 10 * each, "posted": 10 * each, "returned": 0}
    assert run.ledger.get_batch(ACCT, batch_id).status == "completed"
    assert len(run.completed()) == 1


def test_a_late_charge_the_pools_cannot_pay_is_owed_and_repaid_from_the_next_grant(
    run: Run, clock: Clock
) -> None:
    batch_id, twilio, each = _lost_then_swept(run, clock, "swept-2")
    clock.advance(seconds=3601)
    assert run.settle(ACCT, batch_id)[1]
    for pool, credits in run.sound(ACCT).pools.items():  # support empties the account
        if credits:
            run.ledger.adjust(ACCT, pool, -credits, op_id=f"empty-{pool}", actor="test", reason="test")

    _deliver(run, twilio, "read", to=lambda to: to == LOST)
    assert run.sound(ACCT).pools.get("owed") == each
    buy(run.ledger, ACCT, region="AU", packs=1, order_id="cs_more", payment_intent="pi_more")
    assert run.sound(ACCT).pools.get("owed") == 0


def test_a_charged_status_racing_the_completing_settlement_is_charged_once(run: Run, clock: Clock) -> None:
    """The delivery lands after the completing settlement read the lost message as swept and unfinished, but
    before it is written (so the callback finds the batch open): it is charged once, by that settlement's
    second count, and a repeat of the status changes nothing."""
    batch_id, twilio, each = _lost_then_swept(run, clock, "swept-3")
    pools = run.sound(ACCT).pools
    clock.advance(seconds=3601)
    counted = run.messages.all

    def all_then_deliver(batch: B.Batch) -> Any:
        records = list(counted(batch))
        run.messages.all = counted  # type: ignore[method-assign]
        _deliver(run, twilio, "delivered", to=lambda to: to == LOST)
        return iter(records)

    sweep = run.messages.sweep

    def sweep_then_race(batch: B.Batch) -> int:
        marked = sweep(batch)
        run.messages.all = all_then_deliver  # type: ignore[method-assign]
        return marked

    run.messages.sweep = sweep_then_race  # type: ignore[method-assign]
    batch, ended = run.settle(ACCT, batch_id)
    assert ended and batch.late_charged == each  # counted again once it ended: the status found it open
    for _ in range(2):  # a repeat of the status changes nothing
        after = run.sound(ACCT)
        assert sum(pools.values()) - sum(after.pools.values()) == 0  # held at creation, charged in the end
        assert after.held == 0
        assert sum(amount for _, amount in _late_charges(run)) == -each
        _deliver(run, twilio, "delivered", to=lambda to: to == LOST)
    assert len(run.completed()) == 1


def test_a_late_charge_that_did_not_land_is_made_when_its_status_comes_again(run: Run, clock: Clock) -> None:
    from smscredits.domain.errors import Busy

    batch_id, twilio, each = _lost_then_swept(run, clock, "swept-4")
    clock.advance(seconds=3601)
    assert run.settle(ACCT, batch_id)[1]
    pools = run.sound(ACCT).pools
    settle_batch = run.ledger.settle_batch

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise Busy("The account's balance is too busy right now; nothing was changed. Try again.")

    run.ledger.settle_batch = busy  # type: ignore[method-assign]
    with pytest.raises(Busy):
        _deliver(run, twilio, "delivered", to=lambda to: to == LOST)
    run.ledger.settle_batch = settle_batch  # type: ignore[method-assign]
    for _ in range(2):  # the queue's redelivery, then a duplicate
        _deliver(run, twilio, "delivered", to=lambda to: to == LOST)
    assert sum(pools.values()) - sum(run.sound(ACCT).pools.values()) == each


def test_a_charged_status_landing_after_the_sweep_before_the_count_is_returned_and_charged_at_once(
    run: Run, clock: Clock
) -> None:
    """The lost message is swept as returned, then its `delivered` lands before the completing settlement
    reads the records: that one settlement returns it and charges it late (net nothing), once."""
    from smscredits.services import batches

    batch_id, twilio, each = _lost_then_swept(run, clock, "swept-5")
    pools = run.sound(ACCT).pools
    clock.advance(seconds=3601)
    sweep = run.messages.sweep

    def sweep_then_deliver(batch: B.Batch) -> int:
        marked = sweep(batch)
        _deliver(run, twilio, "delivered", to=lambda to: to == LOST)  # finds the batch open
        return marked

    run.messages.sweep = sweep_then_deliver  # type: ignore[method-assign]
    batch, ended = run.settle(ACCT, batch_id)
    run.messages.sweep = sweep  # type: ignore[method-assign]
    assert ended and (batch.returned, batch.late_charged) == (each, each)
    _deliver(run, twilio, "delivered", to=lambda to: to == LOST)  # a repeat
    after = run.sound(ACCT)
    assert sum(pools.values()) == sum(after.pools.values()) and after.held == 0
    assert sum(amount for _, amount in _late_charges(run)) == -each
    shown = batches.view(run.ledger, run.messages, ACCT, batch_id)
    assert shown["credits"] == {"held": 10 * each, "posted": 10 * each, "returned": 0}
    assert len(run.completed()) == 1
