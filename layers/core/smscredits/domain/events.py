"""The events a movement causes (docs/events.md), as values written in the same atomic write as the movement
(the outbox): their names, their stable ids, and the low-balance alerts whose armed state lives on the
balance item.

An event's id derives from the account, the movement's op id and the event's place in it, so a consumer that
sees the same event twice (EventBridge delivers at least once) dedupes on `event_id`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from smscredits.domain.changes import Change, Event
from smscredits.domain.ledger import INCLUDED, LEGACY, PURCHASED_PREFIX, purchased_pool

if TYPE_CHECKING:
    from smscredits.domain.account import Account

SOURCE = "sms-credits"
CREDITS_LOW = "credits.low"
CREDITS_DEPLETED = "credits.depleted"
PACK_PURCHASED = "pack.purchased"
RECHARGE_SUCCEEDED = "recharge.succeeded"
RECHARGE_FAILED = "recharge.failed"
AUTO_RECHARGE_DISABLED = "auto_recharge.disabled"
ALLOWANCE_REFRESHED = "allowance.refreshed"
MESSAGE_SENT = "message.sent"
MESSAGE_FAILED = "message.failed"
SEGMENTS_MISMATCH = "segments.mismatch"
BATCH_COMPLETED = "batch.completed"  # written by the batches' settlement (issue 15) with `event()` below
MIGRATION_REQUESTED = "account.migration_requested"
EVENT_TYPES = (
    CREDITS_LOW,
    CREDITS_DEPLETED,
    PACK_PURCHASED,
    RECHARGE_SUCCEEDED,
    RECHARGE_FAILED,
    AUTO_RECHARGE_DISABLED,
    ALLOWANCE_REFRESHED,
    MESSAGE_SENT,
    MESSAGE_FAILED,
    SEGMENTS_MISMATCH,
    BATCH_COMPLETED,
    MIGRATION_REQUESTED,
)

# The account's low-balance threshold when it has none (docs/product.md §7).
DEFAULT_LOW_BALANCE_THRESHOLD = 20
# The armed state per region on the balance item: absent = armed; "low" fired credits.low; "depleted" fired
# credits.depleted (and credits.low with it when it fell straight through).
LOW = "low"
DEPLETED = "depleted"

_NAMESPACE = uuid.UUID("6f1d2a36-3c1e-4f7e-9a43-2b8f0c6a5d10")


def event(detail_type: str, **detail: Any) -> Event:
    return Event(detail_type, detail)


def event_id(account_id: str, op_id: str, index: int, detail_type: str) -> str:
    """The stable id of the index-th event of the movement `op_id` of `account_id`."""
    return str(uuid.uuid5(_NAMESPACE, f"{account_id}\n{op_id}\n{index}\n{detail_type}"))


def detail_of(account_id: str, op_id: str, index: int, event: Event, occurred_at: str) -> dict[str, Any]:
    """What a consumer receives as the event's `detail`: the ids first, then the event's own fields."""
    return {
        "event_id": event_id(account_id, op_id, index, event.detail_type),
        "account_id": account_id,
        "occurred_at": occurred_at,
        **dict(event.detail),
    }


# ---- low balance ------------------------------------------------------------------------------------


def threshold_of(state: Account, change: Change) -> int:
    """The account's low-balance threshold in force after the change (the field may be set with it)."""
    value = change.account.get("low_balance_threshold", getattr(state, "low_balance_threshold", None))
    return DEFAULT_LOW_BALANCE_THRESHOLD if value is None else int(value)


def spendable_by_region(model: str, home: str, pools: Mapping[str, int]) -> dict[str, int]:
    """Per region, what a send can draw on: included + that region's pool, for the home region and every region
    the account holds a pool of. A legacy account has one pool for every region: it is watched as its home."""
    if model == LEGACY:
        return {home: pools.get(LEGACY, 0)}
    regions = {
        home,
        *(pool.removeprefix(PURCHASED_PREFIX) for pool in pools if pool.startswith(PURCHASED_PREFIX)),
    }
    included = pools.get(INCLUDED, 0)
    return {region: included + pools.get(purchased_pool(region), 0) for region in sorted(regions)}


def with_balance_alerts(state: Account, change: Change) -> Change:
    """The change with the credits.low / credits.depleted it causes and the armed state it leaves, both in
    the same write as the movement (so exactly once across concurrent writers: the write is pinned to the
    balance version the alerts were computed from). Fired once per crossing; re-armed when the spendable
    balance is back at or above the threshold (low) or above 0 (depleted)."""
    threshold = threshold_of(state, change)
    model = str(change.account.get("credit_model", state.credit_model))
    after = spendable_by_region(model, state.home_region, change.movement.pools)
    alerts = dict(getattr(state, "balance_alerts", None) or {})
    fired: list[Event] = []
    for region, credits in after.items():
        current = alerts.get(region)
        if credits <= 0:
            if current is None:
                fired.append(event(CREDITS_LOW, region=region, spendable=credits, threshold=threshold))
            if current != DEPLETED:
                fired.append(event(CREDITS_DEPLETED, region=region, spendable=credits, threshold=threshold))
            alerts[region] = DEPLETED
        elif credits < threshold:
            if current is None:
                fired.append(event(CREDITS_LOW, region=region, spendable=credits, threshold=threshold))
            alerts[region] = LOW
        else:
            alerts.pop(region, None)
    alerts = {region: alerts[region] for region in sorted(alerts) if region in after}
    if alerts == dict(getattr(state, "balance_alerts", None) or {}):
        return change._replace(events=(*change.events, *fired)) if fired else change
    return change._replace(
        account={**change.account, "balance_alerts": alerts}, events=(*change.events, *fired)
    )


def alerting(build: Callable[[Account], Change]) -> Callable[[Account], Change]:
    """`build` with the low-balance alerts of its change: every ledger commits through this."""

    def built(state: Account) -> Change:
        return with_balance_alerts(state, build(state))

    return built
