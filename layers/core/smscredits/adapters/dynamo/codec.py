"""The table's layout: every key prefix and attribute name, and each item to and from its domain value.

One table holds everything. An account's partition (`ACCT#<id>`) has its balance item (`ACCOUNT`), its ledger
entries (`LEDGER#<version>#<index>`), its holds (`HOLD#<message id>`) and its operation guards (`OP#<op id>`);
orders, granted payments and unmatched payments have partitions of their own. The outbox (events written with
the movement that causes them) is a key space of its own, `OUTBOX#<shard>` / `<time>#<event id>`: an event
costs no write unit of the account's partition, and the local poller reads it by time without a scan. Four
sparse indexes: accounts by next refresh time (`DueRefresh`) and pending holds by sweep time (`OpenHolds`), each
sharded; an account's ledger entries by time (`LedgerByTime`, `ledger_at`) for its statements; accounts by id
(`Accounts`, for support's list).

One module on purpose, though over 350 lines: every key and attribute name of the table is here and nowhere
else, so a change to the layout is read and reviewed in one place."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from smscredits.adapters.dynamo.values import to_value
from smscredits.domain.account import DEFAULT_LOW_BALANCE_THRESHOLD, Account, Hold, LedgerRecord
from smscredits.domain.auto_recharge import AutoRecharge
from smscredits.domain.changes import Event, Guard
from smscredits.domain.clawbacks import DisputeState, Refunds
from smscredits.domain.events import detail_of
from smscredits.domain.ledger import Entry, Funding
from smscredits.domain.orders import Order, Payment, UnmatchedPayment
from smscredits.domain.periods import iso, parse_iso
from smscredits.domain.subscriptions import Subscription

ACCOUNT_SK = "ACCOUNT"
LEDGER_PREFIX = "LEDGER#"
HOLD_PREFIX = "HOLD#"
ORDER_SK = "ORDER"
PAYMENT_SK = "PAYMENT"
UNMATCHED_SK = "UNMATCHED"
CUSTOMER_SK = "CUSTOMER"
REFRESH_INDEX = "DueRefresh"
SWEEP_INDEX = "OpenHolds"
# Support's account list: every balance item carries `account_list` = ACCOUNT_LIST, written once at creation and
# never changed, so the index (keys only) is written once per account and never by a credit movement.
ACCOUNTS_INDEX = "Accounts"
ACCOUNT_LIST = "ACCOUNTS"
LEDGER_TIME_INDEX = "LedgerByTime"  # an account's entries by `ledger_at` (statements)
# Shards of the two sparse indexes: spreads a million accounts' refresh times (and open holds) over
# partitions so no single index partition is hot; a sweep queries each shard.
REFRESH_SHARDS = 16
SWEEP_SHARDS = 8
# Outbox shards: 16 partitions of 1,000 write units each take every account's events together.
OUTBOX_PREFIX = "OUTBOX#"
OUTBOX_SHARDS = 16
# The table's TTL attribute (template.yaml TimeToLiveSpecification): epoch seconds after which DynamoDB may
# delete the item (within days of it, docs/security.md).
TTL_ATTRIBUTE = "expires_at_epoch"
# An outbox item outlives its publication: the stream keeps a record 24 hours and the publisher retries
# within them; three days leave a margin for a redrive from the dead-letter queue.
OUTBOX_RETENTION_SECONDS = 3 * 86_400

Key = dict[str, dict[str, str]]


def account_pk(account_id: str) -> str:
    return f"ACCT#{account_id}"


def account_id_of(pk: str) -> str:
    return pk.removeprefix("ACCT#")


def ledger_sk(version: int, index: int) -> str:
    return f"{LEDGER_PREFIX}{version:012d}#{index:02d}"


def ledger_at(created_at: str, version: int, index: int) -> str:
    """An entry's key in LedgerByTime: its time, then its place in the ledger (entries of one instant)."""
    return f"{created_at}#{version:012d}#{index:02d}"


def hold_sk(message_id: str) -> str:
    return f"{HOLD_PREFIX}{message_id}"


def guard_sk(op_id: str) -> str:
    return f"OP#{op_id}"


def shard_name(prefix: str, shard: int) -> str:
    return f"{prefix}#{shard:02d}"


def shard_of(key: str, shards: int, prefix: str) -> str:
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
    return shard_name(prefix, digest % shards)


def key(pk: str, sk: str) -> Key:
    return {"pk": to_value(pk), "sk": to_value(sk)}


def account_key(account_id: str) -> Key:
    return key(account_pk(account_id), ACCOUNT_SK)


def hold_key(account_id: str, message_id: str) -> Key:
    return key(account_pk(account_id), hold_sk(message_id))


def guard_key(account_id: str, op_id: str) -> Key:
    return key(account_pk(account_id), guard_sk(op_id))


def order_key(order_id: str) -> Key:
    return key(f"ORDER#{order_id}", ORDER_SK)


def payment_key(payment_intent: str) -> Key:
    return key(f"PAYMENT#{payment_intent}", PAYMENT_SK)


def customer_key(customer_id: str) -> Key:
    """A Stripe customer's link to its account (Stripe Billing's events name the customer)."""
    return key(f"CUSTOMER#{customer_id}", CUSTOMER_SK)


# ---- accounts ---------------------------------------------------------------------------------------


def account_attributes(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Account fields as stored: moments and days as ISO text, auto-recharge as its map."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, AutoRecharge | Subscription):
            out[name] = value.to_dict()
        elif isinstance(value, datetime):
            out[name] = iso(value)
        elif isinstance(value, date):
            out[name] = value.isoformat()
        elif isinstance(value, Mapping):
            out[name] = dict(value)
        else:
            out[name] = value
    return out


def account_item(account: Account) -> dict[str, Any]:
    fields = {name: getattr(account, name) for name in Account._fields if name != "account_id"}
    return {
        "pk": account_pk(account.account_id),
        "sk": ACCOUNT_SK,
        "type": "account",
        "account_id": account.account_id,
        **account_attributes(fields),
        "refresh_shard": shard_of(account.account_id, REFRESH_SHARDS, "RS"),
        "account_list": ACCOUNT_LIST,
    }


def account_from_item(raw: Mapping[str, Any]) -> Account:
    return Account(
        account_id=raw["account_id"],
        plan=raw["plan"],
        credit_model=raw["credit_model"],
        home_region=raw["home_region"],
        billing_anchor=date.fromisoformat(raw["billing_anchor"]),
        created_at=parse_iso(raw["created_at"]),
        period_start=date.fromisoformat(raw["period_start"]),
        next_refresh_at=parse_iso(raw["next_refresh_at"]),
        allowance=int(raw["allowance"]),
        pools={k: int(v) for k, v in raw.get("pools", {}).items()},
        held=int(raw.get("held", 0)),
        version=int(raw["version"]),
        smart_encoding=bool(raw.get("smart_encoding", False)),
        pending_plan=raw.get("pending_plan"),
        auto_recharge=AutoRecharge.from_dict(raw.get("auto_recharge") or {}),
        migrated_at=parse_iso(raw["migrated_at"]) if raw.get("migrated_at") else None,
        low_balance_threshold=int(raw.get("low_balance_threshold", DEFAULT_LOW_BALANCE_THRESHOLD)),
        balance_alerts={str(k): str(v) for k, v in (raw.get("balance_alerts") or {}).items()},
        subscription=Subscription.from_dict(raw["subscription"]) if raw.get("subscription") else None,
        batch_rate_per_second=(
            int(raw["batch_rate_per_second"]) if raw.get("batch_rate_per_second") is not None else None
        ),
        migration_requested_at=(
            parse_iso(raw["migration_requested_at"]) if raw.get("migration_requested_at") else None
        ),
        migration_requested_by=raw.get("migration_requested_by"),
    )


# ---- entries, holds, guards -------------------------------------------------------------------------


def entry_item(
    account_id: str,
    version: int,
    index: int,
    entry: Entry,
    op_id: str,
    reference: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    return {
        "pk": account_pk(account_id),
        "sk": ledger_sk(version, index),
        "ledger_at": ledger_at(now, version, index),
        "type": "ledger",
        "entry_id": f"{account_id}:{version}:{index}",
        "account_id": account_id,
        "kind": entry.kind,
        "pool": entry.pool,
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "created_at": now,
        "op_id": op_id,
        "reference": dict(reference),
    }


def record_from_item(raw: Mapping[str, Any]) -> LedgerRecord:
    return LedgerRecord(
        entry_id=raw["entry_id"],
        account_id=raw["account_id"],
        kind=raw["kind"],
        pool=raw["pool"],
        amount=int(raw["amount"]),
        balance_after=int(raw["balance_after"]),
        created_at=parse_iso(raw["created_at"]),
        op_id=raw.get("op_id", ""),
        reference=raw.get("reference", {}),
    )


# A hold written before holds recorded their dispatch (no `tries` attribute): its send handed it over
# unmarked, so a replay must take it as maybe sent.
DISPATCHED_BEFORE_MARKS = "unmarked"


def hold_item(hold: Hold, sweep_after: datetime) -> dict[str, Any]:
    return {
        "pk": account_pk(hold.account_id),
        "sk": hold_sk(hold.message_id),
        "type": "hold",
        "account_id": hold.account_id,
        "hold_id": hold.message_id,
        "status": hold.status,
        "credits": hold.credits,
        "funding": [{"pool": f.pool, "credits": f.credits} for f in hold.funding],
        "period_start": hold.period_start.isoformat(),
        "created_at": iso(hold.created_at),
        "request_hash": hold.request_hash,
        "attempt_id": hold.attempt_id,
        "tries": hold.tries,
        "message": dict(hold.message),
        "sweep_shard": shard_of(hold.message_id, SWEEP_SHARDS, "SW"),
        "sweep_after": iso(sweep_after),
    }


def hold_from_item(raw: Mapping[str, Any]) -> Hold:
    return Hold(
        account_id=raw["account_id"],
        message_id=raw["hold_id"],
        status=raw["status"],
        credits=int(raw["credits"]),
        funding=tuple(Funding(f["pool"], int(f["credits"])) for f in raw["funding"]),
        period_start=date.fromisoformat(raw["period_start"]),
        created_at=parse_iso(raw["created_at"]),
        request_hash=raw["request_hash"],
        message=raw.get("message", {}),
        provider=raw.get("provider", {}),
        ended_at=parse_iso(raw["ended_at"]) if raw.get("ended_at") else None,
        attempt_id=raw.get("attempt_id") or "",
        tries=int(raw.get("tries", 1)),
        dispatching=raw.get("dispatching") or ("" if "tries" in raw else DISPATCHED_BEFORE_MARKS),
    )


def guard_item(account_id: str, guard: Guard, now: str) -> dict[str, Any]:
    return {
        "pk": account_pk(account_id),
        "sk": guard_sk(guard.op_id),
        "type": "operation",
        "op_id": guard.op_id,
        "attempt_id": guard.attempt_id,
        "request_hash": guard.request_hash,
        "created_at": now,
        "outcome": dict(guard.outcome),
    }


def guard_from_item(raw: Mapping[str, Any]) -> Guard:
    return Guard(raw["op_id"], raw.get("outcome", {}), raw.get("attempt_id"), raw.get("request_hash"))


def outbox_item(account_id: str, op_id: str, index: int, event: Event, now: str) -> dict[str, Any]:
    """The outbox item of a movement's index-th event (what the stream publisher turns into an EventBridge
    event)."""
    detail = detail_of(account_id, op_id, index, event, now)
    return {
        "pk": shard_of(detail["event_id"], OUTBOX_SHARDS, OUTBOX_PREFIX.rstrip("#")),
        "sk": f"{now}#{detail['event_id']}",
        "type": "event",
        "event_id": detail["event_id"],
        "detail_type": event.detail_type,
        "detail": detail,
        "created_at": now,
        TTL_ATTRIBUTE: int(parse_iso(now).timestamp()) + OUTBOX_RETENTION_SECONDS,
    }


def outbox_shards() -> list[str]:
    return [shard_name(OUTBOX_PREFIX.rstrip("#"), shard) for shard in range(OUTBOX_SHARDS)]


# ---- orders and payments ----------------------------------------------------------------------------


def order_item(order: Order) -> dict[str, Any]:
    return {
        "pk": f"ORDER#{order.order_id}",
        "sk": ORDER_SK,
        "type": "order",
        "order_id": order.order_id,
        "kind": order.kind,
        "account_id": order.account_id,
        "region": order.region,
        "packs": order.packs,
        "credits": order.credits,
        "amount_cents": order.amount_cents,
        "currency": order.currency,
        "customer_id": order.customer_id,
        "status": order.status,
        "save_card": order.save_card,
        "request_hash": order.request_hash,
        "token": order.token,
        "payment_method": order.payment_method,
        "created_at": iso(order.created_at) if order.created_at else None,
    }


def order_from_item(raw: Mapping[str, Any]) -> Order:
    return Order(
        order_id=raw["order_id"],
        kind=raw["kind"],
        account_id=raw["account_id"],
        region=raw["region"],
        packs=int(raw["packs"]),
        amount_cents=int(raw["amount_cents"]),
        currency=raw["currency"],
        customer_id=raw["customer_id"],
        status=raw["status"],
        session_id=raw.get("session_id"),
        checkout_url=raw.get("checkout_url"),
        payment_intent=raw.get("payment_intent"),
        save_card=bool(raw.get("save_card", False)),
        request_hash=raw.get("request_hash"),
        token=raw.get("token"),
        payment_method=raw.get("payment_method"),
        created_at=parse_iso(raw["created_at"]) if raw.get("created_at") else None,
        paid_at=parse_iso(raw["paid_at"]) if raw.get("paid_at") else None,
        failure=raw.get("failure"),
    )


def payment_item(payment: Payment) -> dict[str, Any]:
    return {
        "pk": f"PAYMENT#{payment.payment_intent}",
        "sk": PAYMENT_SK,
        "type": "payment",
        "account_id": payment.account_id,
        "region": payment.region,
        "packs": payment.packs,
        "credits": payment.credits,
        "amount_cents": payment.amount_cents,
        "session_id": payment.session_id,
        "order_id": payment.order_id,
        **refunds_attributes(payment.refunds),
        "taken_credits": payment.taken_credits,
        "created_at": iso(payment.created_at) if payment.created_at else None,
        **({"receipt_url": payment.receipt_url} if payment.receipt_url else {}),
    }


def payment_from_item(raw: Mapping[str, Any]) -> Payment:
    return Payment(
        payment_intent=str(raw["pk"]).removeprefix("PAYMENT#"),
        account_id=raw["account_id"],
        region=raw["region"],
        packs=int(raw["packs"]),
        credits=int(raw["credits"]),
        amount_cents=int(raw["amount_cents"]),
        order_id=raw["order_id"],
        session_id=raw.get("session_id"),
        refunds=refunds_from_item(raw),
        taken_credits=int(raw.get("taken_credits", 0)),
        created_at=parse_iso(raw["created_at"]) if raw.get("created_at") else None,
        receipt_url=raw.get("receipt_url"),
    )


def refunds_attributes(refunds: Refunds) -> dict[str, Any]:
    """A payment's refunds and disputes as the attributes of its item (`moves` numbers the steps applied)."""
    return {
        "refunded_cents": refunds.refunded_cents,
        "disputed_cents": refunds.disputed_cents,
        "clawed_credits": refunds.clawed_credits,
        "disputes": {dispute_id: state._asdict() for dispute_id, state in refunds.disputes.items()},
        "moves": refunds.moves,
    }


def refunds_from_item(raw: Mapping[str, Any]) -> Refunds:
    """A payment item's refunds; an item written before disputes were kept has none and no steps counted."""
    disputes = {
        str(dispute_id): DisputeState(
            int(state["withdrawn_cents"]), int(state["due"]), int(state["taken"]), bool(state["closed"])
        )
        for dispute_id, state in (raw.get("disputes") or {}).items()
    }
    return Refunds(
        int(raw["refunded_cents"]),
        int(raw["disputed_cents"]),
        int(raw["clawed_credits"]),
        disputes,
        int(raw.get("moves", 0)),
    )


def unmatched_item(unmatched: UnmatchedPayment) -> dict[str, Any]:
    return {
        "pk": f"UNMATCHED#{unmatched.object_id}",
        "sk": UNMATCHED_SK,
        "type": "unmatched_payment",
        "object_id": unmatched.object_id,
        "event_type": unmatched.event_type,
        "reason": unmatched.reason,
        "details": unmatched.details,
        "payment": unmatched.payment,
        "created_at": iso(unmatched.created_at),
    }


def unmatched_from_item(raw: Mapping[str, Any]) -> UnmatchedPayment:
    return UnmatchedPayment(
        object_id=raw["object_id"],
        event_type=raw["event_type"],
        reason=raw["reason"],
        details=raw["details"],
        payment=raw["payment"],
        created_at=parse_iso(raw["created_at"]),
    )


_DECODERS = {
    "account": account_from_item,
    "hold": hold_from_item,
    "operation": guard_from_item,
    "order": order_from_item,
    "payment": payment_from_item,
    "unmatched_payment": unmatched_from_item,
}


def decode(raw: Mapping[str, Any]) -> Any:
    """Any item as its domain value (by its `type`); None for an empty one (the item did not exist)."""
    if not raw:
        return None
    return _DECODERS[str(raw.get("type"))](raw)
