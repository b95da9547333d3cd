"""Every ledger operation on accounts and messages as a pure function of the account state it will be pinned
to: it returns the Change to write (domain/changes.py), or raises the refusal or Unchanged that the state
decides. The operations that come from payments are in domain/payment_movements.py.

The clock and the ids are the caller's (`now`, `attempt_id`, `token`): nothing here reads a clock or I/O, so
the same state and arguments give the same Change, whichever ledger applies it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold
from smscredits.domain.changes import Change, Guard, HoldTransition, NewHold, Unchanged
from smscredits.domain.delivery import FINAL_STATUSES
from smscredits.domain.errors import HoldsPending
from smscredits.domain.regions import mask_number

MIGRATION_OP = "migration"


class HoldRequest(NamedTuple):
    """What a send asks the ledger to hold for one message (its id derives from the caller's key)."""

    message_id: str
    segments: int
    region: str
    request_hash: str  # of what was asked: the same key with another request is refused
    message: Mapping[str, Any]  # to, body, region, encoding, segments (what the hold records)


class Migration(NamedTuple):
    """What a migration did: migrated (now), already_migrated (before this call), with the balance before and
    after and the credits converted."""

    outcome: str
    before: Account
    after: Account
    converted: int


# ---- accounts ---------------------------------------------------------------------------------------


def create_account(account: Account, reference: Mapping[str, Any]) -> tuple[Account, Change]:
    """A new account (version 1) with its first allowance granted, and the Change that writes it."""
    pool = L.LEGACY if account.credit_model == "legacy" else L.INCLUDED
    movement = L.grant_movement({}, 0, pool, account.allowance) if account.allowance else L.no_movement({}, 0)
    created = account._replace(pools={**dict(account.pools), **dict(movement.pools)}, version=1)
    return created, Change(f"create:{account.account_id}", movement, reference, result=created)


def adjust(
    state: Account, pool: str, credits: int, *, op_id: str, actor: str, reason: str, request_hash: str
) -> Change:
    """A support correction (positive or negative), never below zero, once per op_id."""
    movement = L.adjust_movement(state.pools, state.held, pool, credits)
    outcome = {"pool": pool, "credits": credits, "balance_after": movement.pools[pool]}
    guard = Guard(op_id, outcome, request_hash=request_hash)
    return Change(op_id, movement, {"actor": actor, "reason": reason}, records=(guard,), result=outcome)


def refresh(
    state: Account,
    *,
    period_start: date,
    next_refresh_at: datetime,
    allowances: Mapping[str, int],
    attempt_id: str,
) -> Change:
    """The refresh for one period: lapse what is left, grant the allowance of the plan in force (a pending
    downgrade, else the current plan), move the next refresh time on. Unchanged when the balance already
    belongs to this period or a later one."""
    if state.period_start >= period_start:
        raise Unchanged(state)
    plan = state.pending_plan or state.plan
    allowance = allowances[plan]
    op_id = f"refresh:{period_start.isoformat()}"
    outcome = {"period_start": period_start.isoformat(), "allowance": allowance}
    return Change(
        op_id,
        L.refresh_movement(state.pools, state.held, state.credit_model, allowance),
        {"period": period_start.isoformat()},
        account={
            "period_start": period_start,
            "next_refresh_at": next_refresh_at,
            "allowance": allowance,
            "plan": plan,
            "pending_plan": None,
        },
        records=(Guard(op_id, outcome, attempt_id),),
    )


def change_plan(state: Account, plan: str, *, allowances: Mapping[str, int], actor: str) -> Change:
    """An upgrade grants the difference at once; a downgrade waits for the next refresh (our rule).

    The guard is keyed by the balance version the change is computed from (the write is pinned to it), so
    a later change back to a plan in the same period is not taken for a duplicate. Unchanged when the plan is
    already in place with nothing pending."""
    if plan == state.plan and state.pending_plan is None:
        raise Unchanged(state, {"granted": 0, "effective": "unchanged"})
    op_id = f"plan:{state.period_start.isoformat()}:{state.version}:{plan}"
    difference = allowances[plan] - state.allowance
    if difference > 0:
        pool = L.LEGACY if state.credit_model == "legacy" else L.INCLUDED
        movement = L.grant_movement(state.pools, state.held, pool, difference)
        changes: dict[str, Any] = {"plan": plan, "allowance": allowances[plan], "pending_plan": None}
        result = {"granted": difference, "effective": "now"}
    elif plan == state.plan:  # cancelling a pending downgrade
        movement, changes = L.no_movement(state.pools, state.held), {"pending_plan": None}
        result = {"granted": 0, "effective": "now"}
    else:
        movement, changes = L.no_movement(state.pools, state.held), {"pending_plan": plan}
        result = {"granted": 0, "effective": "next_refresh"}
    return Change(op_id, movement, {"actor": actor, "plan": plan}, changes, (Guard(op_id, result),), result)


def migrated_pools(
    pools: Mapping[str, int], held: int, home_region: str, ratio: tuple[int, int]
) -> tuple[L.Movement, int]:
    """The migration with the segment model's pools: the legacy pool (now 0) goes, the included pool starts at
    0 (this period's allowance already went into the legacy pool and is converted with it)."""
    movement, converted = L.migration_movement(pools, held, home_region, ratio)
    after = {pool: movement.pools.get(pool, 0) for pool in L.SEGMENT_POOLS}
    if movement.pools.get(L.OWED):
        after[L.OWED] = movement.pools[L.OWED]  # still owed under the new model
    return L.Movement(after, movement.held, movement.entries), converted


def refuse_pending_holds(account: Account) -> None:
    # A hold drew from the legacy pool; voided after the switch it would return to a pool the account no
    # longer has. Holds end within the sweeper's grace period, so support retries shortly.
    if account.held:
        raise HoldsPending(
            f"{account.held} credits are held for messages in flight; migrate once they are settled.",
            {"held": account.held},
        )


def migrate(state: Account, *, ratio: tuple[int, int], actor: str, now: datetime, attempt_id: str) -> Change:
    """Legacy pool → purchased credits of the home region, model switched, once (guarded by `migration`).
    Result: (the account before, the credits converted). Unchanged for an account already migrated."""
    if state.credit_model != "legacy":
        raise Unchanged(state)
    refuse_pending_holds(state)
    movement, converted = migrated_pools(state.pools, state.held, state.home_region, ratio)
    outcome = {"converted": converted, "ratio": f"{ratio[0]}:{ratio[1]}"}
    return Change(
        MIGRATION_OP,
        movement,
        {"actor": actor, **outcome},
        {"credit_model": "segment", "migrated_at": now},
        (Guard(MIGRATION_OP, outcome, attempt_id),),
        (state, converted),
    )


# ---- messages ---------------------------------------------------------------------------------------


def hold_message(
    state: Account,
    request: HoldRequest,
    *,
    now: datetime,
    attempt_id: str,
    legacy_rates: Mapping[str, int],
    sweep_grace_seconds: int,
    previous: Hold | None = None,
) -> Change:
    """Hold a message's credits: included first (it lapses), then the region's pool; all or nothing.
    `previous`: the message's earlier try, voided because Twilio was busy; this is its next try."""
    credits = L.message_credits(state.credit_model, request.segments, request.region, legacy_rates)
    funding = L.funding_for(state.credit_model, state.pools, request.region, credits)
    hold = Hold(
        account_id=state.account_id,
        message_id=request.message_id,
        status="pending",
        credits=credits,
        funding=funding,
        period_start=state.period_start,
        created_at=now,
        request_hash=request.request_hash,
        message=dict(request.message),
        attempt_id=attempt_id,
        tries=previous.tries + 1 if previous else 1,
    )
    reference = {"message_id": request.message_id}
    if request.message.get("to"):
        reference["to"] = mask_number(str(request.message["to"]))  # statements show it; never in full
    return Change(
        f"hold:{request.message_id}" + (f":{hold.tries}" if previous else ""),
        L.hold_movement(state.pools, state.held, funding),
        reference,
        records=(NewHold(hold, now + timedelta(seconds=sweep_grace_seconds)),),
        result=hold,
    )


def end_hold(
    state: Account, hold: Hold, status: str, provider: Mapping[str, Any], *, sid: str | None, now: datetime
) -> Change:
    """Post (charge) or void (return) a pending hold. A void of a hold from an earlier period lapses its
    included part instead of returning it to this period's allowance."""
    if status == "posted":
        movement = L.post_movement(state.pools, state.held, hold.funding)
    else:
        lapsed = hold.period_start != state.period_start
        movement = L.void_movement(state.pools, state.held, hold.funding, included_lapsed=lapsed)
    merged = {**dict(hold.provider), **dict(provider)}
    ended = hold._replace(status=status, ended_at=now, provider=merged)
    reference = {"message_id": hold.message_id, **{k: v for k, v in merged.items() if k == "sid"}}
    transition = HoldTransition(hold.account_id, hold.message_id, "pending", status, merged, now, sid)
    return Change(f"{status}:{hold.message_id}", movement, reference, records=(transition,), result=ended)


def refund(state: Account, hold: Hold, provider: Mapping[str, Any]) -> Change:
    """Return a posted message's credits to the pools it came from (Twilio reported it failed), once, provided
    the callback's SID is the message's and no final status was recorded meanwhile."""
    lapsed = hold.period_start != state.period_start
    merged = {**dict(hold.provider), **dict(provider)}
    transition = HoldTransition(
        hold.account_id,
        hold.message_id,
        "posted",
        "refunded",
        merged,
        None,
        provider.get("sid"),
        FINAL_STATUSES,
    )
    return Change(
        f"refund:{hold.message_id}",
        L.refund_movement(state.pools, state.held, hold.funding, included_lapsed=lapsed),
        {"message_id": hold.message_id},
        records=(transition,),
        result=hold._replace(status="refunded", provider=merged),
    )


def late_charge(state: Account, hold: Hold, provider: Mapping[str, Any], *, sid: str) -> Change:
    """Charge a voided hold after all (a final charged status came after it was voided: swept, or voided on a
    busy answer that was not): its credits are taken again (domain/ledger.py: late_charge_movement), once,
    provided it is still voided with no other SID and no final status recorded."""
    merged = {**dict(hold.provider), **dict(provider), "late_charge": True}
    transition = HoldTransition(
        hold.account_id, hold.message_id, "voided", "posted", merged, None, sid, FINAL_STATUSES
    )
    movement = L.late_charge_movement(
        state.pools, state.held, state.credit_model, str(hold.message.get("region", "")), hold.funding
    )
    return Change(
        f"late_charge:{hold.message_id}",
        movement,
        {"message_id": hold.message_id, "sid": sid},
        records=(transition,),
        result=hold._replace(status="posted", provider=merged),
    )
