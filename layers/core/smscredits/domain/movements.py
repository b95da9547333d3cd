"""Every ledger operation on accounts and messages as a pure function of the account state it will be pinned
to: it returns the Change to write (domain/changes.py), or raises the refusal or Unchanged that the state
decides. The operations that come from payments are in domain/payment_movements.py.

The clock and the ids are the caller's (`now`, `attempt_id`, `token`): nothing here reads a clock or I/O, so
the same state and arguments give the same Change, whichever ledger applies it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from smscredits.domain import events as E
from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold
from smscredits.domain.account_settings import AccountPatch, account_view, patched_fields
from smscredits.domain.catalog import REGIONS
from smscredits.domain.changes import Change, Event, Guard, HoldTransition, NewHold, Unchanged
from smscredits.domain.delivery import FINAL_STATUSES
from smscredits.domain.errors import HoldsPending, InvalidRequest, NotLegacy
from smscredits.domain.periods import anniversary, iso
from smscredits.domain.regions import mask_number

MIGRATION_OP = "migration"
MIGRATION_REQUEST_OP = "migration-request"


class HoldRequest(NamedTuple):
    """What a send asks the ledger to hold for one message (its id derives from the caller's key)."""

    message_id: str
    segments: int
    region: str
    request_hash: str  # of what was asked: the same key with another request is refused
    message: Mapping[str, Any]  # to, body, region, encoding, segments (what the hold records)
    smart_encoding: bool | None = None  # the account setting the segments were counted with


class CountedWithStaleSetting(Exception):
    """The message was counted with a smart_encoding setting the account no longer has (another instance's
    cached view was older): count it again with `smart_encoding`, then hold."""

    def __init__(self, smart_encoding: bool) -> None:
        super().__init__("counted with a stale smart_encoding")
        self.smart_encoding = smart_encoding


class Migration(NamedTuple):
    """What a migration did: migrated (now), already_migrated (before this call), with the balance before and
    after and the credits converted; `replayed`: the answer its Idempotency-Key gave the first time."""

    outcome: str
    before: Account
    after: Account
    converted: int
    replayed: Mapping[str, Any] | None = None


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
    """A support correction (positive or negative), never below zero, once per op_id, only to a pool of the
    credit model the write is pinned to (a cached view may predate a migration)."""
    if pool not in L.pools_for_model(state.credit_model):
        raise InvalidRequest(
            f"A {state.credit_model} account has no {pool} pool.", {"pool": pool, "model": state.credit_model}
        )
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
    downgrade, else the current plan; nothing once a canceled subscription's period is over), move the next
    refresh time on. Unchanged when the balance already belongs to this period or a later one, or when the
    period is not one of the account's billing anchor (a refresh computed before support moved the anchor: the
    new anchor's refresh comes at its own time)."""
    if state.period_start >= period_start:
        raise Unchanged(state)
    if anniversary(state.billing_anchor.day, period_start.year, period_start.month) != period_start:
        raise Unchanged(state)
    plan = state.pending_plan or state.plan
    ended = state.subscription is not None and state.subscription.allowance_ended(period_start)
    allowance = 0 if ended else allowances[plan]  # a canceled subscription's allowance ends with its period
    op_id = f"refresh:{period_start.isoformat()}"
    outcome = {"period_start": period_start.isoformat(), "allowance": allowance}
    refreshed = E.event(
        E.ALLOWANCE_REFRESHED,
        period_start=period_start.isoformat(),
        plan=plan,
        allowance=allowance,
        next_refresh_at=iso(next_refresh_at),
    )
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
        events=(refreshed,),
    )


def change_plan(
    state: Account, plan: str, *, allowances: Mapping[str, int], actor: str, op_id: str, request_hash: str
) -> Change:
    """An upgrade grants the difference at once; a downgrade waits for the next refresh (our rule); the plan
    already in place with nothing pending changes nothing. Once per `op_id` (the caller's Idempotency-Key): its
    guard keeps the answer, whatever the request did."""
    difference = allowances[plan] - state.allowance
    changes: dict[str, Any]
    if plan == state.plan and state.pending_plan is None:
        movement, changes = L.no_movement(state.pools, state.held), {}
        granted, effective = 0, "unchanged"
    elif difference > 0:
        pool = L.LEGACY if state.credit_model == "legacy" else L.INCLUDED
        movement = L.grant_movement(state.pools, state.held, pool, difference)
        changes = {"plan": plan, "allowance": allowances[plan], "pending_plan": None}
        granted, effective = difference, "now"
    elif plan == state.plan:  # cancelling a pending downgrade
        movement, changes = L.no_movement(state.pools, state.held), {"pending_plan": None}
        granted, effective = 0, "now"
    else:
        movement, changes = L.no_movement(state.pools, state.held), {"pending_plan": plan}
        granted, effective = 0, "next_refresh"
    after = state._replace(**changes)
    result = {
        "plan": after.plan,
        "pending_plan": after.pending_plan,
        "granted": granted,
        "effective": effective,
    }
    guard = Guard(op_id, result, request_hash=request_hash)
    return Change(op_id, movement, {"actor": actor, "plan": plan}, changes, (guard,), result)


def update_account(
    state: Account, patch: AccountPatch, *, today: date, actor: str, op_id: str, request_hash: str
) -> Change:
    """Support's change of an account's settings (domain/account_settings.py), no credits moved, once per
    `op_id`: its guard keeps the account as the change left it, which a repeat answers."""
    changes = patched_fields(state, patch, today)
    answer = account_view(state._replace(**changes))
    guard = Guard(op_id, answer, request_hash=request_hash)
    movement = L.no_movement(state.pools, state.held)
    return Change(op_id, movement, {"actor": actor}, changes, (guard,), answer)


class RetryWithMigrationRatio(Exception):
    """The account was migrated after its migration ratio was looked up (or it was not): look it up, build
    again."""


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


def migration_balance(account: Account) -> dict[str, Any]:
    """A balance as a migration's answer shows it (before and after)."""
    pools = account.pools
    return {
        "credit_model": account.credit_model,
        "legacy": pools.get(L.LEGACY, 0) if account.credit_model == "legacy" else None,
        "included": pools.get(L.INCLUDED, 0),
        "purchased": {code: pools.get(L.purchased_pool(code), 0) for code in REGIONS},
        "held": account.held,
    }


def migration_answer(
    before: Account, after: Account, *, dry_run: bool, outcome: str, ratio: tuple[int, int], converted: int
) -> dict[str, Any]:
    """What a migration answers, as plain values (its Idempotency-Key's guard keeps it)."""
    return {
        "account_id": before.account_id,
        "dry_run": dry_run,
        "outcome": outcome,
        "ratio": f"{ratio[0]}:{ratio[1]}",
        "converted": converted,
        "before": migration_balance(before),
        "after": migration_balance(after),
        "migrated_at": iso(after.migrated_at) if after.migrated_at else None,
    }


def migrate(
    state: Account,
    *,
    ratio: tuple[int, int],
    actor: str,
    now: datetime,
    attempt_id: str,
    op_id: str,
    request_hash: str,
) -> Change:
    """Legacy pool → purchased credits of the home region, model switched, once per account (the `migration`
    guard) and once per `op_id` (the caller's Idempotency-Key, whose guard keeps the answer).
    Result: (the account before, the credits converted). Unchanged for an account already migrated."""
    if state.credit_model != "legacy":
        raise Unchanged(state)
    refuse_pending_holds(state)
    movement, converted = migrated_pools(state.pools, state.held, state.home_region, ratio)
    outcome = {"converted": converted, "ratio": f"{ratio[0]}:{ratio[1]}"}
    changes: dict[str, Any] = {"credit_model": "segment", "migrated_at": now}
    after = state._replace(pools=dict(movement.pools), held=movement.held, **changes)
    answer = migration_answer(
        state, after, dry_run=False, outcome="migrated", ratio=ratio, converted=converted
    )
    return Change(
        MIGRATION_OP,
        movement,
        {"actor": actor, **outcome},
        changes,
        (Guard(op_id, answer, attempt_id, request_hash), Guard(MIGRATION_OP, outcome, attempt_id)),
        (state, converted),
    )


def request_migration(state: Account, *, now: datetime, requested_by: str) -> Change:
    """The owner of a legacy account asks support to migrate it: the request recorded on the account with the
    event that tells support (account.migration_requested), no credits moved. Once per account: Unchanged
    when it was already asked; NotLegacy for an account on the segment model."""
    if state.credit_model != "legacy":
        raise NotLegacy(
            "This account already uses the segment model: there is nothing to migrate.",
            {"credit_model": state.credit_model},
        )
    if state.migration_requested_at is not None:
        raise Unchanged(state)
    changes = {"migration_requested_at": now, "migration_requested_by": requested_by}
    notice = E.event(
        E.MIGRATION_REQUESTED,
        requested_by=requested_by,
        plan=state.plan,
        home_region=state.home_region,
        legacy=state.pools.get(L.LEGACY, 0),
        held=state.held,
    )
    movement = L.no_movement(state.pools, state.held)
    return Change(
        MIGRATION_REQUEST_OP, movement, {"actor": requested_by}, changes, events=(notice,), result=True
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
    """Hold a message's credits: included first (it lapses), then the region's pool; all or nothing. Billed
    from the state the write is pinned to: its credit model, and the smart_encoding the count assumed.
    `previous`: the message's earlier try, voided because Twilio was busy; this is its next try."""
    if request.smart_encoding is not None and request.smart_encoding != state.smart_encoding:
        raise CountedWithStaleSetting(state.smart_encoding)
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
    state: Account,
    hold: Hold,
    status: str,
    provider: Mapping[str, Any],
    *,
    sid: str | None,
    now: datetime,
    retention: timedelta,
) -> Change:
    """Post (charge) or void (return) a pending hold. A void of a hold from an earlier period lapses its
    included part instead of returning it to this period's allowance. The ended message may be deleted
    `retention` after it ended (its credits are in the ledger entries, which never expire)."""
    if status == "posted":
        movement = L.post_movement(state.pools, state.held, hold.funding)
    else:
        lapsed = hold.period_start != state.period_start
        movement = L.void_movement(state.pools, state.held, hold.funding, included_lapsed=lapsed)
    merged = {**dict(hold.provider), **dict(provider)}
    ended = hold._replace(status=status, ended_at=now, provider=merged)
    reference = {"message_id": hold.message_id, **{k: v for k, v in merged.items() if k == "sid"}}
    transition = HoldTransition(
        hold.account_id, hold.message_id, "pending", status, merged, now, sid, expires_at=now + retention
    )
    events = message_events(hold, status, merged)
    return Change(
        f"{status}:{hold.message_id}", movement, reference, records=(transition,), result=ended, events=events
    )


def failure_reason(provider: Mapping[str, Any]) -> str:
    """Why a message's credits came back: Twilio refused it (`rejected`), the sweeper gave up on it (`swept`),
    or the status Twilio reported (`failed`)."""
    if provider.get("result") in ("rejected", "swept"):
        return str(provider["result"])
    return str(provider.get("provider_status") or "failed")


def message_events(hold: Hold, status: str, provider: Mapping[str, Any]) -> tuple[Event, ...]:
    """message.sent when a hold is posted (with segments.mismatch when Twilio counted other segments than
    we did); message.failed when its credits come back (every void: a send Twilio refused, a failed status,
    a hold the sweeper voided; and every refund)."""
    segments = int(hold.message.get("segments", 0) or 0)
    common = {
        "message_id": hold.message_id,
        "region": hold.message.get("region"),
        "segments": segments,
        "credits": hold.credits,
        "sid": provider.get("sid"),
    }
    if status != "posted":
        details = {"reason": failure_reason(provider), "error_code": provider.get("error_code")}
        return (E.event(E.MESSAGE_FAILED, **common, **details),)
    sent = E.event(E.MESSAGE_SENT, **common)
    counted = provider.get("num_segments")
    if counted is None or int(counted) == segments:
        return (sent,)
    mismatch = E.event(
        E.SEGMENTS_MISMATCH,
        message_id=hold.message_id,
        sid=provider.get("sid"),
        segments=segments,
        provider_segments=int(counted),
        credits=hold.credits,
    )
    return sent, mismatch


def needs_migration_ratio(state: Account, hold: Hold) -> bool:
    """Whether returning the hold's credits needs the account's migration ratio: legacy credits, and the
    legacy pool is gone."""
    return state.credit_model != "legacy" and any(f.pool == L.LEGACY for f in hold.funding)


def refund(
    state: Account, hold: Hold, provider: Mapping[str, Any], *, migration_ratio: tuple[int, int] | None = None
) -> Change:
    """Return a posted message's credits to the pools it came from (Twilio reported it failed), once, provided
    the callback's SID is the message's and no final status was recorded meanwhile. Credits that came from a
    legacy pool since migrated go where the migration put them (`migration_ratio`, given when
    needs_migration_ratio)."""
    lapsed = hold.period_start != state.period_start
    funding = hold.funding
    if needs_migration_ratio(state, hold):
        if migration_ratio is None:
            raise RetryWithMigrationRatio()
        funding = L.migrated_funding(funding, state.home_region, migration_ratio)
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
        L.refund_movement(state.pools, state.held, funding, included_lapsed=lapsed),
        {"message_id": hold.message_id},
        records=(transition,),
        result=hold._replace(status="refunded", provider=merged),
        events=message_events(hold, "refunded", merged),
    )


def late_charge_earlier_try(state: Account, hold: Hold, try_number: int, sid: str) -> Change:
    """Charge an earlier try of a message that Twilio reported sent after all (that try was voided on a busy
    answer and the message held again as `hold`, its later try), once per try: the guard records its SID. The
    credits are the message's (both tries counted the same request), taken as a late charge takes them."""
    op_id = f"late_charge:{hold.message_id}:try{try_number}"
    movement = L.late_charge_movement(
        state.pools, state.held, state.credit_model, str(hold.message.get("region", "")), hold.funding
    )
    return Change(
        op_id,
        movement,
        {"message_id": hold.message_id, "sid": sid, "try": try_number},
        records=(Guard(op_id, {"sid": sid}),),
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
