"""Batches (docs/product.md §8b): quote, create (one reservation), dispatch through the queue at the paced
rate, status callbacks, settlement on a cadence and at completion, cancel, and what the API shows.

Queue jobs (JSON): `slice` (up to SLICE_SIZE messages with the time they may leave), `settle`, `cancel`.
One settle job per batch, queued with its slices, settles it every `settle_every` seconds (it queues itself
again while the batch is open): slices never settle, so however many workers send a batch's slices, one
settlement reads its records per cadence.
Pacing is a schedule fixed at creation: slice k may leave at created + k·SLICE_SIZE/rate; the job is queued
with that delay (SQS DelaySeconds, at most 900 s) and a worker that gets it early queues it again for the
rest. So concurrent workers keep the account's rate without sharing a counter, and MaximumConcurrency on
the event source bounds how many send at once."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlencode

from smscredits.domain import auto_recharge as AR
from smscredits.domain import batches as B
from smscredits.domain.delivery import settled_by
from smscredits.domain.errors import InsufficientCredits, MalformedProviderEvent
from smscredits.domain.idempotency import IdempotencyKey, request_hash
from smscredits.domain.periods import iso, parse_iso
from smscredits.domain.regions import mask_number
from smscredits.observability import count, logger
from smscredits.services.sending import funding_out, prepare_message

if TYPE_CHECKING:
    from smscredits.domain.account import Account
    from smscredits.services.ports import BatchMessages, BatchQueue, Ledger, Recharger, Sender

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds' limit
BUSY_DELAY_SECONDS = 5  # a slice's messages Twilio refused with 429 (nothing sent) wait this long
TWILIO_TOO_MANY_REQUESTS = 20429


class Pacing(NamedTuple):
    rate: float  # messages per second for an account with no rate of its own; 0: as fast as workers go
    settle_every: int  # seconds between settlements while a batch runs
    grace: int  # seconds after which a message with no final status is settled as it stands


def plan(account: Account, entries: Sequence[B.Entry], legacy_rates: Mapping[str, int]) -> B.Plan:
    return B.plan_batch(account, entries, prepare=prepare_message, legacy_rates=legacy_rates)


def quote(account: Account, entries: Sequence[B.Entry], legacy_rates: Mapping[str, int]) -> dict[str, Any]:
    """What the batch would reserve now, entry by entry, without moving anything."""
    checked = plan(account, entries, legacy_rates)
    needs = checked.region_credits()
    funding, shortfall = B.fund(account.credit_model, account.pools, needs)
    return {
        "count": checked.submitted,
        "valid": len(checked.valid),
        "invalid": [{"index": index, "code": code} for index, code in checked.invalid],
        "duplicates": [{"index": index, "first_index": first} for index, first in checked.duplicates],
        "by_region": checked.by_region(),
        "credits": checked.credits,
        "funding": funding_out(B.total_funding(funding)),
        "affordable": not shortfall,
        "shortfall": shortfall,
        "recharge": _recharge_preview(account, shortfall),
    }


def _recharge_preview(account: Account, shortfall: Mapping[str, int]) -> dict[str, Any] | None:
    """What auto-recharge would buy for the shortfall (one recharge of each short region's configured packs,
    as a short send triggers) and whether that covers it within the monthly cap; None when it would not run."""
    from smscredits.domain.catalog import PACK_CREDITS, pack_price_cents

    auto = account.auto_recharge
    if not shortfall or not auto.enabled or not auto.card_on_file:
        return None
    rules = {region: auto.regions.get(region) for region in shortfall}
    if any(rule is None for rule in rules.values()):
        return None
    packs = {region: rule.packs for region, rule in rules.items() if rule is not None}
    cost = sum(pack_price_cents(region, quantity) for region, quantity in packs.items())
    if (
        auto.monthly_cap_cents is not None
        and auto.spent(account.period_start) + cost > auto.monthly_cap_cents
    ):
        return None
    covers = all(packs[region] * PACK_CREDITS >= short for region, short in shortfall.items())
    return {"packs": packs, "cost_cents": cost, "covers_shortfall": covers}


class CreateCommand(NamedTuple):
    account_id: str
    idempotency_key: IdempotencyKey
    entries: tuple[B.Entry, ...]
    callback_base_url: str


def create(
    ledger: Ledger,
    messages: BatchMessages,
    queue: BatchQueue,
    recharger: Recharger | None,
    command: CreateCommand,
    pacing: Pacing,
) -> dict[str, Any]:
    """Reserve the valid messages (all or nothing, after auto-recharge), write their records and queue them.
    The same key and body answer the same batch; another body is idempotency_key_reused."""
    account_id = command.account_id
    batch_id = B.batch_id_for(account_id, command.idempotency_key)
    hashed = request_hash([list(entry) for entry in command.entries])
    attempt = uuid.uuid4().hex
    account = ledger.known_account(account_id)
    checked = plan(account, command.entries, ledger.legacy_rates)
    # The account's own paced rate (a support setting), else the service's; fixed for the batch at creation.
    rate = float(account.batch_rate_per_second or pacing.rate)
    try:
        batch, created = ledger.reserve_batch(
            account_id, checked, batch_id=batch_id, request_hash=hashed, attempt_id=attempt, rate=rate
        )
    except InsufficientCredits as short:
        shortfall = dict(short.details.get("shortfall", {}))
        # A recharge is claimed only while the region's pools hold less than `needed`: what they hold now
        # plus what is short (the shortfall alone is often less than what they hold, and nothing would be bought).
        account = ledger.get_account(account_id)
        if recharger is None or not all(
            recharger.when_short(account_id, region, AR.spendable(account, region) + credits)
            for region, credits in shortfall.items()
        ):
            raise
        checked = plan(ledger.get_account(account_id), command.entries, ledger.legacy_rates)
        batch, created = ledger.reserve_batch(
            account_id, checked, batch_id=batch_id, request_hash=hashed, attempt_id=attempt, rate=rate
        )
    resume = not batch.dispatch_started and ledger.clock() - batch.created_at > timedelta(seconds=60)
    if batch.status == "open" and (created or resume):
        # A create that crashed after its reservation is resumed by a replay once it cannot still be running.
        count("CreditsHeld", batch.credits_held)
        _dispatch_start(ledger, messages, queue, batch, checked, pacing.settle_every)
    return answer(batch)


def _dispatch_start(
    ledger: Ledger,
    messages: BatchMessages,
    queue: BatchQueue,
    batch: B.Batch,
    checked: B.Plan,
    settle_every: int,
) -> None:
    messages.write_all(batch, checked.valid)
    indexes = [message.position for message in checked.valid]
    jobs: list[tuple[Mapping[str, Any], int]] = []
    slices = [indexes[start : start + B.SLICE_SIZE] for start in range(0, len(indexes), B.SLICE_SIZE)]
    for number, chosen in enumerate(slices):
        wait = number * B.SLICE_SIZE / batch.rate if batch.rate else 0.0
        job = {
            "kind": "slice",
            "account_id": batch.account_id,
            "batch_id": batch.batch_id,
            "indexes": chosen,
            "not_before": iso(batch.created_at + timedelta(seconds=wait)),
        }
        jobs.append((job, min(int(wait), MAX_DELAY_SECONDS)))
    jobs.append((_settle_job(batch.account_id, batch.batch_id), settle_every))
    queue.send(jobs)
    ledger.start_dispatch(batch.account_id, batch.batch_id)


def answer(batch: B.Batch) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id,
        "status": "queued"
        if batch.status == "open" and not batch.cancel_requested
        else B.public_status(batch, {}),
        "accepted": batch.accepted,
        "rejected": [{"index": index, "code": code} for index, code in batch.rejected],
        "credits_held": batch.credits_held,
        "funding": funding_out(B.total_funding(batch.funding)),
    }


# ---- dispatch -----------------------------------------------------------------------------------------


def status_callback_url(base_url: str, batch: B.Batch, index: int) -> str:
    query = {"account_id": batch.account_id, "batch_id": batch.batch_id, "index": str(index)}
    return f"{base_url}/webhooks/twilio/status?" + urlencode(query)


def handle(
    job: Mapping[str, Any],
    *,
    ledger: Ledger,
    messages: BatchMessages,
    queue: BatchQueue,
    sender: Sender,
    base_url: str,
    pacing: Pacing,
) -> str:
    """One queue job; returns what it did (for the log)."""
    account_id, batch_id = str(job["account_id"]), str(job["batch_id"])
    if job["kind"] == "slice":
        return dispatch_slice(
            job,
            ledger=ledger,
            messages=messages,
            queue=queue,
            sender=sender,
            base_url=base_url,
            pacing=pacing,
        )
    if job["kind"] == "cancel":
        return (
            cancel_queued(ledger, messages, account_id, batch_id)
            + "; "
            + _settle_if_due(ledger, messages, queue, account_id, batch_id, pacing, again=False)
        )
    if job["kind"] == "settle":
        return _settle_if_due(ledger, messages, queue, account_id, batch_id, pacing, again=True)
    raise MalformedProviderEvent(f"Unknown batch job {job['kind']!r}.")


def dispatch_slice(
    job: Mapping[str, Any],
    *,
    ledger: Ledger,
    messages: BatchMessages,
    queue: BatchQueue,
    sender: Sender,
    base_url: str,
    pacing: Pacing,
) -> str:
    """Send a slice's queued messages once each: marked dispatching before Twilio is asked (a redelivered
    job finds them marked and sends nothing), then recorded sent or rejected in one write. An ambiguous
    failure leaves the message dispatching, never re-sent: its callback or the grace period settles it.
    Twilio's 429 sent nothing: those messages go back to queued and their slice waits BUSY_DELAY_SECONDS."""
    account_id, batch_id = str(job["account_id"]), str(job["batch_id"])
    early = (parse_iso(str(job["not_before"])) - ledger.clock()).total_seconds()
    if early > 1:
        queue.send([(job, min(math.ceil(early), MAX_DELAY_SECONDS))])
        return "early: queued again"
    batch = ledger.get_batch(account_id, batch_id)
    records = messages.read(batch_id, [int(index) for index in job["indexes"]])
    queued = [record for record in records if record["status"] == B.QUEUED]
    if batch.status != "open" or batch.cancel_requested:
        cancelled = messages.move(batch_id, [(r["index"], "cancelled", {}) for r in queued], B.QUEUED)
        return f"cancelled {len(cancelled)}"
    marked = set(messages.move(batch_id, [(r["index"], B.DISPATCHING, {}) for r in queued], B.QUEUED))
    results: list[tuple[int, str, Mapping[str, Any]]] = []
    busy: list[int] = []
    for record in (r for r in queued if r["index"] in marked):
        outcome = sender.send(
            to=record["to"],
            body=record["body"],
            status_callback=status_callback_url(base_url, batch, record["index"]),
        )
        if outcome.result == "accepted":
            results.append(
                (record["index"], B.SENT, {"sid": outcome.sid, "provider_status": outcome.status or "queued"})
            )
        elif outcome.result == "rejected" and outcome.error_code == TWILIO_TOO_MANY_REQUESTS:
            busy.append(record["index"])
        elif outcome.result == "rejected":
            detail = {"error_code": outcome.error_code, "error_message": outcome.error_message}
            results.append((record["index"], "rejected", {k: v for k, v in detail.items() if v is not None}))
    messages.move(batch_id, results, B.DISPATCHING)
    if busy:
        messages.move(batch_id, [(index, B.QUEUED, {}) for index in busy], B.DISPATCHING)
        retry = {**job, "indexes": busy, "not_before": iso(ledger.clock())}
        queue.send([(retry, BUSY_DELAY_SECONDS)])
        count("BatchTwilioBusy", len(busy))
    sent = sum(1 for _, status, _ in results if status == B.SENT)
    count("MessagesSent", sent)
    return f"sent {sent} of {len(queued)}"


def cancel_queued(ledger: Ledger, messages: BatchMessages, account_id: str, batch_id: str) -> str:
    """Cancel every message of a cancelled batch not yet handed to Twilio (each move conditional on queued,
    so a worker marking it dispatching at the same moment wins or loses cleanly)."""
    batch = ledger.get_batch(account_id, batch_id)
    queued = [record["index"] for record in messages.all(batch) if record["status"] == B.QUEUED]
    cancelled = 0
    for start in range(0, len(queued), 100):
        chosen = queued[start : start + 100]
        cancelled += len(messages.move(batch_id, [(index, "cancelled", {}) for index in chosen], B.QUEUED))
    return f"cancelled {cancelled}"


def _settle_if_due(
    ledger: Ledger,
    messages: BatchMessages,
    queue: BatchQueue,
    account_id: str,
    batch_id: str,
    pacing: Pacing,
    *,
    again: bool,
) -> str:
    """Settle when the cadence says so (at most one settlement per `settle_every`, however many jobs ask).
    `again` (the batch's settle job): while the batch stays open the job comes back when the next settlement
    is due, so a batch always ends."""
    batch = ledger.get_batch(account_id, batch_id)
    if batch.status != "open":
        return "settled already"
    since = ledger.clock() - (batch.last_settled_at or batch.created_at)
    wait = pacing.settle_every - since.total_seconds()
    outcome = "not due"
    if wait <= 0:
        batch, ended = settle(ledger, messages, account_id, batch_id, pacing)
        outcome = "completed" if ended else f"settlement {batch.settlements}"
        wait = pacing.settle_every
    if again and batch.status == "open":
        queue.send([(_settle_job(account_id, batch_id), min(math.ceil(wait), MAX_DELAY_SECONDS))])
    return outcome


def _settle_job(account_id: str, batch_id: str) -> dict[str, Any]:
    return {"kind": "settle", "account_id": account_id, "batch_id": batch_id}


def settle(
    ledger: Ledger,
    messages: BatchMessages,
    account_id: str,
    batch_id: str,
    pacing: Pacing,
) -> tuple[B.Batch, bool]:
    """Post and return what the batch's message records show final, in one write on the balance; the one
    that ends the batch writes batch.completed with it (domain/batches.py: the outbox). Past the grace period
    (which runs from the batch's last scheduled slice: a slow batch is never cut short) the records with no
    final status are swept first, so this settlement ends the batch."""
    batch = ledger.get_batch(account_id, batch_id)
    rate = batch.rate or pacing.rate  # a batch written before it kept its rate: the service's
    schedule = batch.accepted / rate if rate else 0
    due = ledger.clock() - batch.created_at >= timedelta(seconds=pacing.grace + schedule)
    if batch.status == "open" and batch.dispatch_started and due:
        count("BatchMessagesSwept", messages.sweep(batch))
    batch, ended = _settle(ledger, messages, account_id, batch_id)
    if ended:
        count("CreditsPosted", batch.posted)
        count("CreditsVoided", batch.returned)
        detail = {
            "account_id": account_id,
            "batch_id": batch_id,
            "status": batch.status,
            "accepted": batch.accepted,
            "credits": {"held": batch.credits_held, "posted": batch.posted, "returned": batch.returned},
        }
        logger.info("batch completed", extra=detail)
    return batch, ended


def _settle(ledger: Ledger, messages: BatchMessages, account_id: str, batch_id: str) -> tuple[B.Batch, bool]:
    """One settlement of what the records show. When it ends the batch while swept messages can still get a
    final status, they are counted once more: a status recorded after that count was read found the batch
    open, so it did not ask for its settlement (settle_late), and this one refunds or charges it."""
    swept_unfinished = False

    def counted(batch: B.Batch) -> tuple[Mapping[str, B.Settled], bool]:
        nonlocal swept_unfinished
        settled, counts, final = B.tally(list(messages.all(batch)))
        # Handed to Twilio with no final status: when the batch ends they are swept, and a status may follow.
        swept_unfinished = counts.get(B.SENT, 0) + counts.get(B.DISPATCHING, 0) > 0
        return settled, final and (batch.dispatch_started or batch.accepted == 0)

    batch, ended = ledger.settle_batch(account_id, batch_id, counted)
    if ended and swept_unfinished:
        batch, _ = ledger.settle_batch(account_id, batch_id, counted)
    return batch, ended


def settle_late(ledger: Ledger, messages: BatchMessages, account_id: str, batch_id: str) -> str:
    """A final status for a message of an ended batch that its grace period settled the other way: Twilio
    reported failed one it charged (its credits come back: refunded), or charged one it returned (its credits
    are taken again: a late charge, what no pool holds owed). Either is a further settlement (cumulative, so a
    repeat moves nothing)."""
    before = ledger.get_batch(account_id, batch_id)
    if before.status == "open":
        return "settled by the batch"  # the next settlement counts it
    after, _ = _settle(ledger, messages, account_id, batch_id)
    refunded = after.refunded - before.refunded
    charged = after.late_charged - before.late_charged
    detail = {"account_id": account_id, "batch_id": batch_id}
    if refunded:
        count("CreditsRefunded", refunded)
        logger.info("batch message refunded after the batch ended", extra={**detail, "credits": refunded})
    if charged:
        # As a single send's late charge (counted by the write that lands it): alarmed, since the validity
        # period should make it impossible.
        logger.error(
            "ALERT a batch message returned at the grace period was reported charged: its credits were taken again",
            extra={**detail, "credits": charged},
        )
    return "refunded" if refunded else "charged late" if charged else "unchanged"


def cancel(ledger: Ledger, queue: BatchQueue, account_id: str, batch_id: str) -> dict[str, Any]:
    """Stop an open batch: its unsent messages are cancelled by the worker and returned at the settlement
    that follows. A second cancel changes nothing."""
    batch, asked = ledger.cancel_batch(account_id, batch_id)
    if asked:
        queue.send([({"kind": "cancel", "account_id": account_id, "batch_id": batch_id}, 0)])
    return {"batch_id": batch_id, "status": B.public_status(batch, {}), "cancelled": asked}


# ---- callbacks ----------------------------------------------------------------------------------------


def apply_callback(
    ledger: Ledger,
    messages: BatchMessages,
    *,
    account_id: str,
    batch_id: str,
    index: int,
    status: str,
    sid: str | None,
) -> str:
    """A Twilio status for a batch message: recorded when it moves the message forward, its SID being the
    message's (no credit moves here while the batch runs: its next settlement posts or returns it). A message
    the batch does not have, or one not handed to Twilio, is refused by the record's own condition. A final
    status for a message the grace period swept is settled at once when the batch has ended (settle_late: a
    failure the grace period charged is refunded, a charged status it returned is charged late): no
    settlement of it comes any more. A repeated final status asks for that again (the first may have been
    recorded and then failed to land: the queue delivers it again, and the record no longer moves); the
    counters make it once. A message not swept was final when its batch ended, or its batch is still open:
    its callback reads nothing more."""
    if not sid:
        raise MalformedProviderEvent("The callback has no MessageSid.", {"MessageSid": "missing"})
    moved, swept = messages.callback(batch_id, index, status, sid, settled_by(status))
    final = status in B.RETURNED | B.CHARGED
    late = settle_late(ledger, messages, account_id, batch_id) if final and swept else "unchanged"
    if late in ("refunded", "charged late"):
        return late
    return "status recorded" if moved else "unchanged"


# ---- what the API shows -------------------------------------------------------------------------------


def view(ledger: Ledger, messages: BatchMessages, account_id: str, batch_id: str) -> dict[str, Any]:
    batch = ledger.get_batch(account_id, batch_id)
    _, counts, _ = B.tally(list(messages.all(batch)))
    return {
        **answer(batch),
        "status": B.public_status(batch, counts),
        "count": batch.submitted,
        "counts": counts,
        # A message refunded after the grace period charged it shows as returned, one charged late after the
        # grace period returned it as posted: posted + returned = held.
        "credits": {
            "held": batch.credits_held,
            "posted": batch.posted - batch.refunded + batch.late_charged,
            "returned": batch.returned + batch.refunded - batch.late_charged,
        },
        "settlements": batch.settlements,
        "created_at": iso(batch.created_at),
        "ended_at": iso(batch.ended_at) if batch.ended_at else None,
    }


def message_page(
    ledger: Ledger,
    messages: BatchMessages,
    account_id: str,
    batch_id: str,
    *,
    cursor: str | None,
    status: str | None,
    limit: int,
) -> dict[str, Any]:
    batch = ledger.get_batch(account_id, batch_id)
    found, last = messages.page(batch, after=B.parse_cursor(cursor), limit=limit, status=status)
    return {
        "messages": [
            {
                "index": int(record["index"]),
                "message_id": f"{batch_id}:{int(record['index'])}",
                "to": mask_number(str(record["to"])),
                "status": record["status"],
                "segments": int(record["segments"]),
                "credits": int(record["credits"]),
                "ref": record.get("ref"),
            }
            for record in found
        ],
        "next_cursor": str(last) if last is not None else None,
    }
