"""A Change as DynamoDB writes: one TransactWriteItems (the balance pinned to its version, each record with its
precondition as a condition expression, the ledger entries), or one conditional single-item write for a
record written without a balance. Every condition returns the item as it was (ALL_OLD) when it fails, so the
ledger learns why without a read."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from smscredits.adapters.dynamo import codec as C
from smscredits.adapters.dynamo.values import to_item, to_value
from smscredits.domain.account import Account, Hold
from smscredits.domain.changes import (
    BatchCancel,
    BatchDispatch,
    BatchSettlement,
    Change,
    DeliveryStatus,
    Dispatch,
    Guard,
    HoldTransition,
    NewBatch,
    NewHold,
    NewOrder,
    NewPayment,
    NewUnmatched,
    OrderNote,
    OrderPaid,
    OrderSession,
    PaymentRefunds,
    Record,
)
from smscredits.domain.periods import iso

ALL_OLD = {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
NEW_PARTITION = "attribute_not_exists(pk)"
NEW_ITEM = "attribute_not_exists(sk)"


def transaction(table: str, state: Account, change: Change, now: str) -> list[dict[str, Any]]:
    """The TransactWriteItems of `change` applied to `state`: balance first (a refusal's first reason), then
    the records in the change's order, then the entries."""
    version = state.version + 1
    sets = {
        "pools": dict(change.movement.pools),
        "held": change.movement.held,
        "version": version,
        "updated_at": now,
    }
    sets.update(C.account_attributes(change.account))
    names = {f"#a{i}": name for i, name in enumerate(sets)}
    values = {f":a{i}": to_value(value) for i, value in enumerate(sets.values())}
    values[":v"] = to_value(state.version)
    names["#version"] = "version"
    balance = {
        "Update": {
            "TableName": table,
            "Key": C.account_key(state.account_id),
            "UpdateExpression": "SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(sets))),
            "ConditionExpression": "#version = :v",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            **ALL_OLD,
        }
    }
    records = [_transact(table, state.account_id, record, now) for record in change.records]
    return [
        balance,
        *records,
        *entries(table, state.account_id, version, change, now),
        *outbox(table, state.account_id, change, now),
    ]


def creation(table: str, account: Account, change: Change, now: str) -> list[dict[str, Any]]:
    """A new account's balance item (it must not exist) and its first entries."""
    put = {
        "Put": {
            "TableName": table,
            "Item": to_item(C.account_item(account)),
            "ConditionExpression": NEW_PARTITION,
        }
    }
    return [put, *entries(table, account.account_id, account.version, change, now)]


def entries(table: str, account_id: str, version: int, change: Change, now: str) -> list[dict[str, Any]]:
    return [
        {
            "Put": {
                "TableName": table,
                "Item": to_item(
                    C.entry_item(account_id, version, index, entry, change.op_id, change.reference, now)
                ),
                "ConditionExpression": NEW_ITEM,
            }
        }
        for index, entry in enumerate(change.movement.entries)
    ]


def outbox(table: str, account_id: str, change: Change, now: str) -> list[dict[str, Any]]:
    """The change's events as outbox items. No condition of their own: the balance version (or the record
    that pins a write without a balance) makes the whole write happen once, and every item key is new."""
    return [
        {
            "Put": {
                "TableName": table,
                "Item": to_item(C.outbox_item(account_id, change.op_id, index, event, now)),
            }
        }
        for index, event in enumerate(change.events)
    ]


def single(table: str, record: Record, now: str) -> tuple[str, dict[str, Any]]:
    """A record written on its own: (the client operation, its request)."""
    ((kind, request),) = _transact(table, "", record, now).items()
    return ("put_item" if kind == "Put" else "update_item"), request


def _transact(table: str, account_id: str, record: Record, now: str) -> dict[str, Any]:
    match record:
        case Guard():
            return _put(table, C.guard_item(account_id, record, now), NEW_ITEM)
        case NewHold(hold, sweep_after):
            return _new_hold(table, hold, sweep_after)
        case HoldTransition():
            return _hold_transition(table, record)
        case Dispatch():
            return _update(
                table,
                C.hold_key(record.account_id, record.message_id),
                "SET dispatching = :attempt",
                ["#status = :pending AND attribute_not_exists(dispatching)"],
                {":attempt": record.attempt_id, ":pending": "pending"},
                {"#status": "status"},
            )
        case DeliveryStatus():
            return _delivery_status(table, record)
        case NewOrder() | OrderSession() | OrderPaid() | NewPayment() | PaymentRefunds() | OrderNote():
            return _payment_transact(table, record)
        case NewUnmatched(unmatched):
            return _put(table, C.unmatched_item(unmatched), NEW_PARTITION)
        case NewBatch() | BatchSettlement() | BatchCancel() | BatchDispatch():
            from smscredits.adapters.dynamo.batches import batch_write  # only batch paths load it

            return batch_write(table, record)
    raise TypeError(f"no DynamoDB write for {type(record).__name__}")


def _payment_transact(
    table: str, record: NewOrder | OrderSession | OrderPaid | NewPayment | PaymentRefunds | OrderNote
) -> dict[str, Any]:
    """The writes of an order and its payment (their own partitions)."""
    match record:
        case NewOrder(order):
            return _put(table, C.order_item(order), NEW_PARTITION)
        case OrderSession():
            return _order_session(table, record)
        case OrderPaid():
            return _order_paid(table, record)
        case NewPayment(payment):
            return _put(table, C.payment_item(payment), NEW_PARTITION)
        case PaymentRefunds():
            return _payment_refunds(table, record)
    return _order_note(table, record)


def _new_hold(table: str, hold: Hold, sweep_after: datetime) -> dict[str, Any]:
    """A hold's first try must be new; a later try replaces the try before it, voided as retryable."""
    put = _put(table, C.hold_item(hold, sweep_after), NEW_ITEM)
    if hold.tries == 1:
        return put
    previous = "tries = :previous" if hold.tries > 2 else "(attribute_not_exists(tries) OR tries = :previous)"
    put["Put"]["ConditionExpression"] = f"#status = :voided AND provider.retryable = :yes AND {previous}"
    put["Put"]["ExpressionAttributeNames"] = {"#status": "status"}
    put["Put"]["ExpressionAttributeValues"] = {
        ":voided": to_value("voided"),
        ":yes": to_value(True),
        ":previous": to_value(hold.tries - 1),
    }
    return put


def _put(table: str, item: Mapping[str, Any], condition: str) -> dict[str, Any]:
    return {"Put": {"TableName": table, "Item": to_item(item), "ConditionExpression": condition, **ALL_OLD}}


def _update(
    table: str,
    key: C.Key,
    expression: str,
    conditions: list[str],
    values: dict[str, Any],
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": expression,
        "ConditionExpression": " AND ".join(filter(None, conditions)),
        "ExpressionAttributeValues": {name: to_value(value) for name, value in values.items()},
        **ALL_OLD,
    }
    if names:
        request["ExpressionAttributeNames"] = dict(names)
    return {"Update": request}


def provider_condition(sid: str | None, settled: Collection[str] = ()) -> tuple[str, dict[str, Any]]:
    """The condition on a hold's provider map: the SID recorded there, if any, is `sid` (a callback for another
    message moves nothing), and the status recorded there, if any, is none of `settled` (statuses only move
    forward; a final one is final). Empty when there is nothing to check."""
    parts: list[str] = []
    values: dict[str, Any] = {}
    if sid:
        parts.append("(attribute_not_exists(provider.sid) OR provider.sid = :sid)")
        values[":sid"] = sid
    if settled:
        keys = [f":settled{index}" for index in range(len(settled))]
        parts.append(
            "(attribute_not_exists(provider.provider_status) "
            f"OR NOT provider.provider_status IN ({', '.join(keys)}))"
        )
        values.update(dict(zip(keys, sorted(settled), strict=True)))
    return " AND ".join(parts), values


def _hold_transition(table: str, record: HoldTransition) -> dict[str, Any]:
    check, values = provider_condition(record.sid, record.settled)
    values.update(
        {":status": record.status, ":provider": dict(record.provider), ":expected": record.expected}
    )
    expression = "SET #status = :status, provider = :provider"
    if record.expires_at is not None:
        expression += f", {C.TTL_ATTRIBUTE} = :expires"
        values[":expires"] = int(record.expires_at.timestamp())
    if record.ended_at is not None:
        expression += ", ended_at = :now REMOVE sweep_shard, sweep_after"
        values[":now"] = iso(record.ended_at)
    key = C.hold_key(record.account_id, record.message_id)
    return _update(table, key, expression, ["#status = :expected", check], values, {"#status": "status"})


def _delivery_status(table: str, record: DeliveryStatus) -> dict[str, Any]:
    check, values = provider_condition(record.sid, record.settled)
    values.update({":status": record.status, ":sid": record.sid, ":posted": "posted"})
    return _update(
        table,
        C.hold_key(record.account_id, record.message_id),
        "SET provider.provider_status = :status, provider.sid = :sid",
        ["#status = :posted AND attribute_exists(provider)", check],
        values,
        {"#status": "status"},
    )


def _order_session(table: str, record: OrderSession) -> dict[str, Any]:
    return _update(
        table,
        C.order_key(record.order_id),
        "SET session_id = :session, checkout_url = :url, #status = :open",
        ["attribute_exists(pk) AND (attribute_not_exists(session_id) OR session_id = :session)"],
        {":session": record.session_id, ":url": record.url, ":open": "open"},
        {"#status": "status"},
    )


def _order_paid(table: str, record: OrderPaid) -> dict[str, Any]:
    conditions = ["attribute_exists(pk)"]
    values: dict[str, Any] = {":paid": "paid", ":now": iso(record.paid_at)}
    assignments = ["#status = :paid", "paid_at = if_not_exists(paid_at, :now)"]
    if record.payment_intent:
        conditions.append("(attribute_not_exists(payment_intent) OR payment_intent = :intent)")
        assignments.append("payment_intent = :intent")
        values[":intent"] = record.payment_intent
    if record.session_id:
        conditions.append("session_id = :session")
        values[":session"] = record.session_id
    return _update(
        table,
        C.order_key(record.order_id),
        "SET " + ", ".join(assignments),
        conditions,
        values,
        {"#status": "status"},
    )


def _order_note(table: str, record: OrderNote) -> dict[str, Any]:
    conditions = ["attribute_exists(pk)"]
    assignments: list[str] = []
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    if record.payment_intent:
        conditions.append("(attribute_not_exists(payment_intent) OR payment_intent = :intent)")
        assignments.append("payment_intent = :intent")
        values[":intent"] = record.payment_intent
    if record.status:
        conditions.append("#status <> :paid")
        assignments += ["#status = :status", "#failure = :failure"]
        values.update({":paid": "paid", ":status": record.status, ":failure": record.failure})
        names.update({"#status": "status", "#failure": "failure"})
    return _update(
        table, C.order_key(record.order_id), "SET " + ", ".join(assignments), conditions, values, names
    )


def _payment_refunds(table: str, record: PaymentRefunds) -> dict[str, Any]:
    """The payment's refunds moved on, only from the state the step was computed from: the same number of steps
    applied (an item written before steps were counted has no `moves` and none applied)."""
    before, after = record.before, record.after
    attributes = C.refunds_attributes(after)
    unchanged = "moves = :m0" if before.moves else "(attribute_not_exists(moves) OR moves = :m0)"
    return _update(
        table,
        C.payment_key(record.payment_intent),
        "SET "
        + ", ".join(f"{name} = :{name}" for name in attributes)
        + ", taken_credits = taken_credits + :t",
        ["refunded_cents = :r0 AND disputed_cents = :d0 AND clawed_credits = :c0", unchanged],
        {
            **{f":{name}": value for name, value in attributes.items()},
            ":t": record.taken,
            ":r0": before.refunded_cents,
            ":d0": before.disputed_cents,
            ":c0": before.clawed_credits,
            ":m0": before.moves,
        },
    )
