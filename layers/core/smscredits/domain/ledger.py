"""Ledger math: pools, the cost of a message, and the pure computation of every credit movement.

Each function here takes the balance as last written (pools, held) and returns a Movement: the new pools,
the new held total and the immutable entries that explain the difference. The ledger applies a movement in
one conditional write pinned to the balance version it was computed from, so a movement never lands on a
balance it was not computed for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

from smscredits.domain.catalog import REGIONS
from smscredits.domain.errors import InsufficientCredits, InvalidRequest

INCLUDED = "included"
LEGACY = "legacy"
# Not a pool credits are spent from: what a late charge could not take from the pools (never a negative pool),
# taken first from the account's next grants.
OWED = "owed"
PURCHASED_PREFIX = "purchased:"

CreditModel = Literal["segment", "legacy"]
# The kinds of ledger entry (public: statements filter and show them).
ENTRY_KINDS: tuple[str, ...] = (
    "grant",  # allowance granted into a pool
    "purchase",  # a paid pack (checkout or auto-recharge)
    "hold",  # credits held for a message
    "post",  # a hold charged (no pool change: the credits left the pool at hold time)
    "void",  # a hold returned to the pools it came from
    "expiry",  # included credits lapsing at a refresh
    "adjustment",  # support correction, with actor and reason
    "clawback",  # credits taken back after a Stripe refund or dispute
    "reinstatement",  # credits a dispute took back, given back when its funds were reinstated
    "migration",  # legacy pool converted into purchased credits
    "refund",  # a charged message Twilio reported failed, returned to its pools
    "late_charge",  # a voided message Twilio reported sent after all: charged again (what no pool had is owed)
    "repayment",  # owed credits taken from a grant
)

# The most ledger entries one statement request reads (about 250 KB: some 60 read units on DynamoDB): the bound
# that keeps a filter on a rare kind from reading a whole ledger in one request (a short page with a cursor).
STATEMENT_MAX_SCANNED = 1000


def purchased_pool(region: str) -> str:
    return f"{PURCHASED_PREFIX}{region}"


SEGMENT_POOLS: tuple[str, ...] = (INCLUDED, *(purchased_pool(code) for code in REGIONS))


def pools_for_model(model: CreditModel) -> tuple[str, ...]:
    return (LEGACY,) if model == "legacy" else SEGMENT_POOLS


class Entry(NamedTuple):
    kind: str
    pool: str
    amount: int  # signed: what this entry added to the pool
    balance_after: int


class Funding(NamedTuple):
    pool: str
    credits: int


class Movement(NamedTuple):
    """What one operation does to the balance: the new pools and held total, and the entries that explain it."""

    pools: Mapping[str, int]
    held: int
    entries: tuple[Entry, ...]


def message_credits(model: CreditModel, segments: int, region: str, legacy_rates: Mapping[str, int]) -> int:
    """1 credit per segment; a legacy account pays its region's flat rate whatever the length."""
    return legacy_rates[region] if model == "legacy" else segments


def funding_for(
    model: CreditModel, pools: Mapping[str, int], region: str, credits: int
) -> tuple[Funding, ...]:
    """Which pools pay for `credits`: included first (it lapses), then the region's pool. All or nothing."""
    order = (LEGACY,) if model == "legacy" else (INCLUDED, purchased_pool(region))
    remaining = credits
    funding: list[Funding] = []
    for pool in order:
        take = min(remaining, max(pools.get(pool, 0), 0))
        if take:
            funding.append(Funding(pool, take))
            remaining -= take
    if remaining:
        raise InsufficientCredits(
            f"This message needs {credits} credits; the pools that can pay for it hold {credits - remaining}.",
            {"needed": credits, "region": region, "pools": {pool: pools.get(pool, 0) for pool in order}},
        )
    return tuple(funding)


def _apply(
    pools: Mapping[str, int], held: int, moves: Sequence[tuple[str, str, int]], held_delta: int
) -> Movement:
    new_pools = dict(pools)
    entries = []
    for kind, pool, amount in moves:
        new_pools[pool] = new_pools.get(pool, 0) + amount
        if new_pools[pool] < 0:
            raise InvalidRequest(f"Pool {pool} cannot go below zero.", {"pool": pool})
        entries.append(Entry(kind, pool, amount, new_pools[pool]))
    return Movement(new_pools, held + held_delta, tuple(entries))


def _repaying(pools: Mapping[str, int], moves: Sequence[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """`moves` followed by the repayment of what is owed from what they granted (positive amounts), first come
    first taken: each repayment leaves the granted pool and lowers the owed credits."""
    owed = pools.get(OWED, 0)
    out = list(moves)
    for _, pool, amount in moves:
        take = min(owed, amount) if pool != OWED else 0
        if take > 0:
            out += [("repayment", pool, -take), ("repayment", OWED, -take)]
            owed -= take
    return out


def grant_movement(
    pools: Mapping[str, int], held: int, pool: str, credits: int, kind: str = "grant"
) -> Movement:
    if credits <= 0:
        raise InvalidRequest("A grant must be a positive number of credits.", {"credits": credits})
    return _apply(pools, held, _repaying(pools, [(kind, pool, credits)]), 0)


def late_charge_movement(
    pools: Mapping[str, int], held: int, model: CreditModel, region: str, funding: Sequence[Funding]
) -> Movement:
    """Charge a voided message again (Twilio reported it sent after its hold was returned): from the pools it
    came from, then any pool that can pay for its region; what none of them holds is owed."""
    order = [f.pool for f in funding]
    order += [
        pool
        for pool in ((LEGACY,) if model == "legacy" else (INCLUDED, purchased_pool(region)))
        if pool not in order
    ]
    left = sum(f.credits for f in funding)
    moves: list[tuple[str, str, int]] = []
    for pool in order:
        take = min(left, max(pools.get(pool, 0), 0))
        if take:
            moves.append(("late_charge", pool, -take))
            left -= take
    if left:
        moves.append(("late_charge", OWED, left))
    return _apply(pools, held, moves, 0)


def hold_movement(pools: Mapping[str, int], held: int, funding: Sequence[Funding]) -> Movement:
    return _apply(
        pools, held, [("hold", f.pool, -f.credits) for f in funding], sum(f.credits for f in funding)
    )


def post_movement(pools: Mapping[str, int], held: int, funding: Sequence[Funding]) -> Movement:
    # The credits already left the pools at hold time; the post entry records that they are spent.
    return _apply(pools, held, [("post", f.pool, 0) for f in funding], -sum(f.credits for f in funding))


def void_movement(
    pools: Mapping[str, int], held: int, funding: Sequence[Funding], *, included_lapsed: bool
) -> Movement:
    """Return a hold to its pools. Included credits held across a refresh lapse instead of joining the new
    period's allowance (returned, then expired, so the statement shows both)."""
    moves: list[tuple[str, str, int]] = []
    for f in funding:
        moves.append(("void", f.pool, f.credits))
        if f.pool == INCLUDED and included_lapsed:
            moves.append(("expiry", f.pool, -f.credits))
    return _apply(pools, held, moves, -sum(f.credits for f in funding))


def refund_movement(
    pools: Mapping[str, int], held: int, funding: Sequence[Funding], *, included_lapsed: bool
) -> Movement:
    """Return a posted message's credits to the pools it came from (Twilio reported it failed): as a void,
    but nothing was held any more, and the entries say refund."""
    void = void_movement(
        pools, held + sum(f.credits for f in funding), funding, included_lapsed=included_lapsed
    )
    entries = tuple(
        Entry("refund" if e.kind == "void" else e.kind, e.pool, e.amount, e.balance_after)
        for e in void.entries
    )
    return Movement(void.pools, held, entries)


def no_movement(pools: Mapping[str, int], held: int) -> Movement:
    """The balance as it is: for changes that move no credits (settings, a claim, a recorded failure)."""
    return Movement(pools, held, ())


def adjust_movement(pools: Mapping[str, int], held: int, pool: str, credits: int) -> Movement:
    if credits == 0:
        raise InvalidRequest("An adjustment must move at least one credit.", {"credits": 0})
    if pools.get(pool, 0) + credits < 0:
        raise InvalidRequest(
            f"Pool {pool} holds {pools.get(pool, 0)}; it cannot go below zero.",
            {"pool": pool, "available": pools.get(pool, 0), "credits": credits},
        )
    return _apply(pools, held, _repaying(pools, [("adjustment", pool, credits)]), 0)


def refresh_movement(pools: Mapping[str, int], held: int, model: CreditModel, allowance: int) -> Movement:
    """The monthly refresh. Segment model: what is left of the included pool lapses, then the allowance is
    granted. Legacy model (our rule): the allowance is added to the one legacy pool and nothing lapses,
    because that pool also holds credits bought under the old system."""
    if model == "legacy":
        return _apply(pools, held, _repaying(pools, [("grant", LEGACY, allowance)] if allowance else []), 0)
    moves: list[tuple[str, str, int]] = []
    left = pools.get(INCLUDED, 0)
    if left:
        moves.append(("expiry", INCLUDED, -left))
    if allowance:
        moves.append(("grant", INCLUDED, allowance))
    return _apply(pools, held, _repaying(pools, moves), 0)


def clawback_movement(
    pools: Mapping[str, int], held: int, pool: str, credits: int, *, returned: int = 0
) -> tuple[Movement, int]:
    """Give back `returned` credits to a pool (a reversed dispute's), then take back up to `credits` from it,
    never below zero. Returns the movement and what was taken."""
    moves: list[tuple[str, str, int]] = [("reinstatement", pool, returned)] if returned else []
    taken = min(credits, max(pools.get(pool, 0) + returned, 0))
    if taken:
        moves.append(("clawback", pool, -taken))
    return _apply(pools, held, moves, 0), taken


def migrated_funding(
    funding: Sequence[Funding], home_region: str, ratio: tuple[int, int]
) -> tuple[Funding, ...]:
    """A message's funding as the migration converted it: what came from the legacy pool returns to the home
    region's purchased pool at the migration's ratio, rounded down as the migration rounds (never more than
    the migration would have made of it)."""
    converted = (
        Funding(purchased_pool(home_region), f.credits * ratio[0] // ratio[1]) if f.pool == LEGACY else f
        for f in funding
    )
    return tuple(f for f in converted if f.credits)


def migration_movement(
    pools: Mapping[str, int], held: int, home_region: str, ratio: tuple[int, int]
) -> tuple[Movement, int]:
    """Legacy pool → purchased credits of the home region, rounded down. Returns the movement and the credits."""
    legacy = pools.get(LEGACY, 0)
    converted = legacy * ratio[0] // ratio[1]
    moves: list[tuple[str, str, int]] = []
    if legacy:
        moves.append(("migration", LEGACY, -legacy))
    if converted:
        moves.append(("migration", purchased_pool(home_region), converted))
    return _apply(pools, held, moves, 0), converted
