"""Batches (docs/product.md §8b) as pure functions: each entry checked as a single send is, duplicates by
normalised number, the credits per region, the funding in the usual order, the one reservation and the
settlements that post and return the batch's credits exactly once.

The batch's reservation is an open hold (its id is the batch's id) whose credits are what is not settled yet,
so `held` = open message holds + unsettled batch credits and the ledger check covers batches as it is.
Settlements carry cumulative counters per region (posted, returned, refunded, late_charged); each one moves only the
difference from the counters the batch item holds, and is pinned to the batch's settlement count, so a
settlement computed twice, late or out of order returns each credit once.

At the grace period a message with no final status is swept (its record marked once, conditional on the
status it had): charged if Twilio accepted it, returned if not. The mark fixes how every settlement counts
it, so a `failed` that arrives later for a message swept as charged is refunded (the refunded counter), and a
charged final status that arrives later for a message swept as returned (its hand-over had no answer, yet
Twilio sent it) is charged late (the late_charged counter, taken as a single send's late charge takes it:
domain/ledger.py late_charge_movement, what no pool holds is owed), each once, even after the batch completed.

Per region the reservation's funding is an ordered list of pools (included first, then the region's pool):
posted credits are taken from its front (included lapses: spend it first) and returned credits from its back
(purchased credits last longest: give those back). Since posted + returned never exceed what was held, the
two never overlap, and the split is a function of the two counters alone. Refunded credits, a part of the
posted ones, go back from the front of the funding, so each pool's share only grows with the counter; late
charges, a part of the returned ones, are taken in the funding's order (included first, then the region's
pool, then any pool that can pay for the region)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

from smscredits.domain import events as E
from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold
from smscredits.domain.changes import BatchSettlement, Change, NewBatch
from smscredits.domain.errors import DomainError, InsufficientCredits, InvalidRequest
from smscredits.domain.idempotency import message_id_for

MAX_MESSAGES = 10_000
SLICE_SIZE = 10  # messages per queue message: one conditional transaction marks them, one records them
SHARD_SIZE = 1_000  # messages per partition of the batch's records (BATCH#<id>#<shard>)

# A message's record moves forward through these; the last five are final.
QUEUED, DISPATCHING, SENT = "queued", "dispatching", "sent"
CHARGED = frozenset({"delivered", "undelivered", "read"})  # final and charged (`undelivered` stays charged)
RETURNED = frozenset({"failed", "canceled", "rejected", "cancelled"})  # final, credits come back
MESSAGE_STATUSES = (QUEUED, DISPATCHING, SENT, *sorted(CHARGED), *sorted(RETURNED))
BATCH_STATUSES = ("queued", "sending", "completed", "cancelled")
SWEPT_CHARGED, SWEPT_RETURNED = "charged", "returned"  # a swept record's `swept` mark


class Entry(NamedTuple):
    """One submitted message as the caller sent it."""

    to: str
    body: str
    ref: str | None = None


class Planned(NamedTuple):
    """A valid message: what will be sent and what it costs."""

    position: int  # its index in the submitted list
    to: str  # E.164
    region: str
    text: str  # trimmed (and smart-encoded when the account asks): what is billed is what is sent
    encoding: str
    segments: int
    credits: int
    ref: str | None


class Plan(NamedTuple):
    """A submitted batch checked entry by entry."""

    submitted: int
    valid: tuple[Planned, ...]
    invalid: tuple[tuple[int, str], ...]  # (index, code)
    duplicates: tuple[tuple[int, int], ...]  # (index, first index)

    def by_region(self) -> dict[str, dict[str, int]]:
        regions: dict[str, dict[str, int]] = {}
        for message in self.valid:
            totals = regions.setdefault(message.region, {"messages": 0, "segments": 0, "credits": 0})
            totals["messages"] += 1
            totals["segments"] += message.segments
            totals["credits"] += message.credits
        return dict(sorted(regions.items()))

    def region_credits(self) -> dict[str, int]:
        return {region: totals["credits"] for region, totals in self.by_region().items()}

    @property
    def credits(self) -> int:
        return sum(message.credits for message in self.valid)

    def rejected(self) -> list[tuple[int, str]]:
        """Invalid entries and duplicates, in index order, each with its code."""
        found = [*self.invalid, *((index, "duplicate") for index, _ in self.duplicates)]
        return sorted(found)


def plan_batch(
    account: Account,
    entries: Sequence[Entry],
    *,
    prepare: Any,
    legacy_rates: Mapping[str, int],
) -> Plan:
    """Check each entry with `prepare` (the single send's validation: (to, body, smart_encoding) → prepared
    message or a DomainError) and drop a repeated recipient after its first appearance."""
    valid: list[Planned] = []
    invalid: list[tuple[int, str]] = []
    duplicates: list[tuple[int, int]] = []
    first_of: dict[str, int] = {}
    for index, entry in enumerate(entries):
        try:
            prepared = prepare(entry.to, entry.body, smart_encoding=account.smart_encoding)
        except DomainError as refused:
            invalid.append((index, refused.code))
            continue
        if prepared.to in first_of:
            duplicates.append((index, first_of[prepared.to]))
            continue
        first_of[prepared.to] = index
        count = prepared.counted
        credits = L.message_credits(account.credit_model, count.segments, prepared.region, legacy_rates)
        valid.append(
            Planned(
                index,
                prepared.to,
                prepared.region,
                prepared.text,
                count.encoding,
                count.segments,
                credits,
                entry.ref,
            )
        )
    return Plan(len(entries), tuple(valid), tuple(invalid), tuple(duplicates))


# ---- funding ----------------------------------------------------------------------------------------


def fund(
    model: L.CreditModel, pools: Mapping[str, int], needs: Mapping[str, int]
) -> tuple[dict[str, tuple[L.Funding, ...]], dict[str, int]]:
    """Which pools pay for each region's credits, and what each region is short of.

    The shared pool (included, or legacy) pays first, as for a single send; it is given first to what the
    regions' own pools cannot cover (so a batch is refused only when the pools together cannot pay), then,
    region by region in code order, to as much of the rest as it holds (it lapses: spend it first)."""
    shared = L.LEGACY if model == "legacy" else L.INCLUDED
    available = max(pools.get(shared, 0), 0)
    own = {
        region: (0 if model == "legacy" else max(pools.get(L.purchased_pool(region), 0), 0))
        for region in needs
    }
    from_shared: dict[str, int] = {}
    shortfall: dict[str, int] = {}
    for region in sorted(needs):  # first what only the shared pool can pay
        deficit = max(needs[region] - own[region], 0)
        take = min(deficit, available)
        from_shared[region] = take
        available -= take
        if deficit > take:
            shortfall[region] = deficit - take
    for region in sorted(needs):  # then the rest of the shared pool, before the regions' own pools
        extra = min(available, needs[region] - from_shared[region] - shortfall.get(region, 0))
        from_shared[region] += max(extra, 0)
        available -= max(extra, 0)
    funding: dict[str, tuple[L.Funding, ...]] = {}
    for region in sorted(needs):
        rest = needs[region] - from_shared[region] - shortfall.get(region, 0)
        parts = [L.Funding(shared, from_shared[region])]
        if model != "legacy":
            parts.append(L.Funding(L.purchased_pool(region), rest))
        funding[region] = tuple(part for part in parts if part.credits)
    return funding, shortfall


def total_funding(funding: Mapping[str, Sequence[L.Funding]]) -> tuple[L.Funding, ...]:
    """The per-region funding summed per pool, in the usual order (included or legacy first)."""
    totals: dict[str, int] = {}
    for parts in funding.values():
        for part in parts:
            totals[part.pool] = totals.get(part.pool, 0) + part.credits
    order = {pool: position for position, pool in enumerate((L.LEGACY, *L.SEGMENT_POOLS))}
    return tuple(
        L.Funding(pool, credits)
        for pool, credits in sorted(totals.items(), key=lambda p: order[p[0]])
        if credits
    )


def shortfall_error(shortfall: Mapping[str, int], needs: Mapping[str, int]) -> InsufficientCredits:
    return InsufficientCredits(
        f"The batch needs {sum(needs.values())} credits; the pools are {sum(shortfall.values())} short.",
        {"shortfall": dict(shortfall), "needed": dict(needs)},
    )


# ---- the batch ----------------------------------------------------------------------------------------


class Settled(NamedTuple):
    """Cumulative credits of one region's messages that ended charged (posted) or not (returned), of those
    posted at the grace period that Twilio reported failed afterwards (refunded, a part of posted), and of
    those returned at the grace period that Twilio reported charged afterwards (late_charged, a part of
    returned). Charged in the end: posted - refunded + late_charged; returned: the rest of what was held."""

    posted: int = 0
    returned: int = 0
    refunded: int = 0
    late_charged: int = 0


class Batch(NamedTuple):
    """A batch's reservation and its settlement state (stored with its open hold)."""

    account_id: str
    batch_id: str
    status: str  # open | completed | cancelled (sending/queued are read from its messages)
    request_hash: str
    attempt_id: str
    created_at: datetime
    period_start: date  # of the included pool it drew from (the lapse rule)
    submitted: int  # entries submitted
    accepted: int
    rejected: tuple[tuple[int, str], ...]
    funding: Mapping[str, tuple[L.Funding, ...]]  # per region, in spending order
    settled: Mapping[str, Settled]  # per region, cumulative
    settlements: int  # settlements applied: each is pinned to this count
    cancel_requested: bool = False
    dispatch_started: bool = False  # its messages are written and queued
    last_settled_at: datetime | None = None
    ended_at: datetime | None = None
    rate: float = 0.0  # messages per second its slices were scheduled at (0: no pacing)

    @property
    def credits_held(self) -> int:
        return sum(part.credits for parts in self.funding.values() for part in parts)

    @property
    def posted(self) -> int:
        return sum(s.posted for s in self.settled.values())

    @property
    def returned(self) -> int:
        return sum(s.returned for s in self.settled.values())

    @property
    def refunded(self) -> int:
        return sum(s.refunded for s in self.settled.values())

    @property
    def late_charged(self) -> int:
        return sum(s.late_charged for s in self.settled.values())

    @property
    def unsettled(self) -> int:
        return self.credits_held - self.posted - self.returned


def batch_id_for(account_id: str, key: str) -> str:
    return "bat_" + message_id_for(account_id, f"batch\n{key}").removeprefix("msg_")


def split(funding: Sequence[L.Funding], settled: Settled) -> tuple[list[L.Funding], list[L.Funding]]:
    """What of a region's funding is posted (from the front) and returned (from the back) at these counters."""
    posted, returned = [], []
    left = settled.posted
    for part in funding:
        take = min(left, part.credits)
        posted.append(L.Funding(part.pool, take))
        left -= take
    left = settled.returned
    for part in reversed(funding):
        take = min(left, part.credits)
        returned.append(L.Funding(part.pool, take))
        left -= take
    return posted, returned


def front_part(funding: Sequence[L.Funding], credits: int) -> list[L.Funding]:
    """`credits` of a region's funding taken from its front (a refunded or late-charged counter's share of
    each pool: it only grows with the counter)."""
    parts, left = [], credits
    for part in funding:
        take = min(left, part.credits)
        parts.append(L.Funding(part.pool, take))
        left -= take
    return parts


def remaining(batch: Batch, settled: Mapping[str, Settled]) -> tuple[L.Funding, ...]:
    """The pools the unsettled credits still come from (the open hold's funding)."""
    left: dict[str, list[L.Funding]] = {}
    for region, parts in batch.funding.items():
        posted, returned = split(parts, settled.get(region, Settled()))
        left[region] = [
            L.Funding(part.pool, part.credits - p.credits - r.credits)
            for part, p, r in zip(parts, posted, reversed(returned), strict=True)
        ]
    return total_funding(left)


def queued_record(batch: Batch, message: Planned) -> dict[str, Any]:
    """A message's record as the reservation writes it: queued, with what dispatch and settlement read."""
    return {
        "account_id": batch.account_id,
        "batch_id": batch.batch_id,
        "index": message.position,
        "to": message.to,
        "body": message.text,
        "ref": message.ref,
        "region": message.region,
        "encoding": message.encoding,
        "segments": message.segments,
        "credits": message.credits,
        "status": QUEUED,
    }


def open_hold(batch: Batch) -> Hold:
    """The batch's reservation as a hold: its credits are what is not settled yet."""
    left = remaining(batch, batch.settled)
    return Hold(
        account_id=batch.account_id,
        message_id=batch.batch_id,
        status="pending" if batch.status == "open" else "posted",
        credits=sum(part.credits for part in left),
        funding=left,
        period_start=batch.period_start,
        created_at=batch.created_at,
        request_hash=batch.request_hash,
        message={"batch_id": batch.batch_id, "messages": batch.accepted},
        ended_at=batch.ended_at,
        attempt_id=batch.attempt_id,
    )


def reserve(
    state: Account,
    plan: Plan,
    *,
    batch_id: str,
    request_hash: str,
    now: datetime,
    attempt_id: str,
    rate: float = 0.0,
) -> Change:
    """The one reservation: the pools debited for every valid message, one entry per pool, the batch and its
    open hold. InsufficientCredits (shortfall per region) when the pools cannot pay for all of them."""
    needs = plan.region_credits()
    funding, shortfall = fund(state.credit_model, state.pools, needs)
    if shortfall:
        raise shortfall_error(shortfall, needs)
    batch = Batch(
        account_id=state.account_id,
        batch_id=batch_id,
        status="open" if plan.valid else "completed",
        request_hash=request_hash,
        attempt_id=attempt_id,
        created_at=now,
        period_start=state.period_start,
        submitted=plan.submitted,
        accepted=len(plan.valid),
        rejected=tuple(plan.rejected()),
        funding=funding,
        settled={region: Settled() for region in funding},
        settlements=0,
        ended_at=None if plan.valid else now,
        rate=rate,
    )
    return Change(
        f"batch:{batch_id}",
        L.hold_movement(state.pools, state.held, total_funding(funding)),
        {"batch_id": batch_id, "messages": len(plan.valid)},
        records=(NewBatch(batch),),
        result=batch,
    )


def advances(batch: Batch, counted: Mapping[str, Settled]) -> bool:
    """Whether `counted` moves any of the batch's counters forward (a settlement would move credits)."""
    return any(
        now > was
        for region, settled in batch.settled.items()
        for was, now in zip(settled, counted.get(region, Settled()), strict=True)
    )


def settle(
    state: Account,
    batch: Batch,
    counted: Mapping[str, Settled],
    *,
    now: datetime,
    complete: bool,
) -> Change:
    """One settlement: post, return, refund and charge late the difference between `counted` (cumulative, per
    region) and what the batch settled so far, pinned to the batch's settlement count. `complete` ends the
    batch (every message is final or swept). Counters never move back: a count read before an earlier
    settlement is raised to it. On a batch that already ended only refunds and late charges can move: its
    status, end and event stay as they were."""
    target: dict[str, Settled] = {}
    to_post: list[L.Funding] = []
    to_return: list[L.Funding] = []
    to_refund: list[L.Funding] = []
    to_charge_late: dict[str, list[L.Funding]] = {}
    for region, parts in batch.funding.items():
        before = batch.settled.get(region, Settled())
        seen = counted.get(region, Settled())
        reached = Settled(*(max(was, now) for was, now in zip(before, seen, strict=True)))
        target[region] = reached
        to_refund += [
            L.Funding(a.pool, a.credits - b.credits)
            for a, b in zip(
                front_part(parts, reached.refunded), front_part(parts, before.refunded), strict=True
            )
        ]
        to_charge_late[region] = [
            L.Funding(a.pool, a.credits - b.credits)
            for a, b in zip(
                front_part(parts, reached.late_charged), front_part(parts, before.late_charged), strict=True
            )
        ]
        posted_before, returned_before = split(parts, before)
        posted_after, returned_after = split(parts, reached)
        to_post += [
            L.Funding(a.pool, a.credits - b.credits) for a, b in zip(posted_after, posted_before, strict=True)
        ]
        to_return += [
            L.Funding(a.pool, a.credits - b.credits)
            for a, b in zip(returned_after, returned_before, strict=True)
        ]
    posts = total_funding({"": [f for f in to_post if f.credits]})
    returns = total_funding({"": [f for f in to_return if f.credits]})
    refunds = total_funding({"": [f for f in to_refund if f.credits]})
    movement = L.post_movement(state.pools, state.held, posts)
    lapsed = batch.period_start != state.period_start
    returned = L.void_movement(movement.pools, movement.held, returns, included_lapsed=lapsed)
    refunded = L.refund_movement(returned.pools, returned.held, refunds, included_lapsed=lapsed)
    entries = movement.entries + returned.entries + refunded.entries
    movement = L.Movement(refunded.pools, refunded.held, entries)
    for region, late in sorted(to_charge_late.items()):
        if sum(part.credits for part in late):
            charged = L.late_charge_movement(movement.pools, movement.held, state.credit_model, region, late)
            movement = L.Movement(charged.pools, charged.held, movement.entries + charged.entries)
    ended = batch.status != "open"
    complete = complete and not ended  # batch.completed is written once, by the settlement that ends it
    if ended:
        status, ended_at = batch.status, batch.ended_at
    else:
        status = ("cancelled" if batch.cancel_requested else "completed") if complete else "open"
        ended_at = now if complete else None
    after = batch._replace(
        settled=target,
        settlements=batch.settlements + 1,
        status=status,
        last_settled_at=now,
        ended_at=ended_at,
    )
    completed = E.event(
        E.BATCH_COMPLETED,
        batch_id=batch.batch_id,
        status=status,
        accepted=batch.accepted,
        credits={"held": batch.credits_held, "posted": after.posted, "returned": after.returned},
    )
    return Change(
        f"batch:{batch.batch_id}:settlement:{batch.settlements + 1}",
        movement,
        {"batch_id": batch.batch_id, "settlement": batch.settlements + 1},
        records=(BatchSettlement(batch, after),),
        result=after,
        events=(completed,) if complete else (),
    )


def tally(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Settled], dict[str, int], bool]:
    """From the batch's message records: cumulative (posted, returned, refunded, late_charged) per region, the
    count per status, and whether every message is final or swept. A swept record counts as its mark says,
    whatever status comes later; one swept as charged that then failed is also refunded, one swept as returned
    that was then charged is also charged late."""
    settled: dict[str, list[int]] = {}
    counts: dict[str, int] = {}
    final = True
    for record in records:
        status, region, credits = record["status"], record["region"], int(record["credits"])
        counts[status] = counts.get(status, 0) + 1
        totals = settled.setdefault(region, [0, 0, 0, 0])
        swept = record.get("swept")
        if swept == SWEPT_CHARGED or (swept is None and status in CHARGED):
            totals[0] += credits
            totals[2] += credits if status in RETURNED else 0
        elif swept == SWEPT_RETURNED or status in RETURNED:
            totals[1] += credits
            totals[3] += credits if swept == SWEPT_RETURNED and status in CHARGED else 0
        else:
            final = False
    return {region: Settled(*totals) for region, totals in settled.items()}, counts, final


def sweep_mark(record: Mapping[str, Any]) -> str | None:
    """How the grace period settles a record with no final status (None: it has one, or is swept already):
    charged when Twilio accepted it, returned when it was never handed over or its hand-over had no answer
    (as the sweeper voids a single send's hold)."""
    if record.get("swept") or record["status"] in CHARGED | RETURNED:
        return None
    return SWEPT_CHARGED if record["status"] == SENT else SWEPT_RETURNED


def record_status(provider_status: str) -> str:
    """A message record's status for a Twilio status: the final ones as they are, any other means sent."""
    return provider_status if provider_status in CHARGED | RETURNED else SENT


def public_status(batch: Batch, counts: Mapping[str, int]) -> str:
    if batch.status in ("completed", "cancelled"):
        return batch.status
    if batch.cancel_requested:
        return "cancelled"
    return "queued" if counts.get(QUEUED, 0) == batch.accepted else "sending"


def parse_cursor(cursor: str | None) -> int:
    """A message listing's cursor: the last index it showed (-1: from the start)."""
    if cursor is None:
        return -1
    if not cursor.isdigit() or int(cursor) >= MAX_MESSAGES:
        raise InvalidRequest("The cursor is not one this API returned.", {"cursor": "invalid"})
    return int(cursor)
