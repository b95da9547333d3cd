"""Batches on DynamoDB: the batch item and its writes, and the per-message records.

The batch item is the batch's open hold (`ACCT#<account>`, `HOLD#<batch id>`, the hold's attributes, so the
ledger check reads it as one) with the batch's own state in its `batch` map, and no sweep attributes (a batch
is settled by its own settlements, never voided whole by the sweeper). Its messages live under the batch's
own keys, `BATCH#<id>#<shard>` (1,000 messages a partition), `MSG#<index>`: a 10,000-message batch writes
none of them on the account's partition, whose 1,000 WCU/s its single sends need."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from smscredits.adapters.dynamo import codec as C
from smscredits.adapters.dynamo.client import dynamodb_client
from smscredits.adapters.dynamo.values import from_item, query_items, to_item, to_value
from smscredits.domain import batches as B
from smscredits.domain.changes import BatchCancel, BatchDispatch, BatchSettlement, NewBatch
from smscredits.domain.ledger import Funding
from smscredits.domain.periods import iso, parse_iso

ALL_OLD = {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
MESSAGE_PREFIX = "MSG#"
BATCH_WRITE_LIMIT = 25  # items per BatchWriteItem
TRANSACT_LIMIT = 100  # items per TransactWriteItems


def message_pk(batch_id: str, index: int) -> str:
    return f"BATCH#{batch_id}#{index // B.SHARD_SIZE:02d}"


def message_sk(index: int) -> str:
    return f"{MESSAGE_PREFIX}{index:05d}"


def message_key(batch_id: str, index: int) -> C.Key:
    return C.key(message_pk(batch_id, index), message_sk(index))


# ---- the batch item -----------------------------------------------------------------------------------


def _funding(parts: Iterable[Funding]) -> list[dict[str, Any]]:
    return [{"pool": part.pool, "credits": part.credits} for part in parts]


def _state(batch: B.Batch) -> dict[str, Any]:
    return {
        "status": batch.status,
        "submitted": batch.submitted,
        "accepted": batch.accepted,
        "rejected": [[index, code] for index, code in batch.rejected],
        "funding": {region: _funding(parts) for region, parts in batch.funding.items()},
        "settled": {
            region: {
                "posted": s.posted,
                "returned": s.returned,
                "refunded": s.refunded,
                "late_charged": s.late_charged,
            }
            for region, s in batch.settled.items()
        },
        "settlements": batch.settlements,
        "cancel_requested": batch.cancel_requested,
        "dispatch_started": batch.dispatch_started,
        "last_settled_at": iso(batch.last_settled_at) if batch.last_settled_at else None,
        "ended_at": iso(batch.ended_at) if batch.ended_at else None,
        "rate": str(batch.rate),
    }


def batch_item(batch: B.Batch) -> dict[str, Any]:
    hold = B.open_hold(batch)
    return {
        "pk": C.account_pk(batch.account_id),
        "sk": C.hold_sk(batch.batch_id),
        "type": "hold",
        "account_id": batch.account_id,
        "hold_id": batch.batch_id,
        "status": hold.status,
        "credits": hold.credits,
        "funding": _funding(hold.funding),
        "period_start": batch.period_start.isoformat(),
        "created_at": iso(batch.created_at),
        "request_hash": batch.request_hash,
        "attempt_id": batch.attempt_id,
        "message": dict(hold.message),
        "ended_at": iso(batch.ended_at) if batch.ended_at else None,
        "batch_state": _state(batch),
    }


def batch_from_item(raw: Mapping[str, Any]) -> B.Batch:
    state = raw["batch_state"]
    return B.Batch(
        account_id=raw["account_id"],
        batch_id=raw["hold_id"],
        status=state["status"],
        request_hash=raw["request_hash"],
        attempt_id=raw.get("attempt_id") or "",
        created_at=parse_iso(raw["created_at"]),
        period_start=date.fromisoformat(raw["period_start"]),
        submitted=int(state["submitted"]),
        accepted=int(state["accepted"]),
        rejected=tuple((int(index), str(code)) for index, code in state.get("rejected", [])),
        funding={
            region: tuple(Funding(p["pool"], int(p["credits"])) for p in parts)
            for region, parts in state["funding"].items()
        },
        settled={
            region: B.Settled(
                int(s["posted"]),
                int(s["returned"]),
                int(s.get("refunded", 0)),
                int(s.get("late_charged", 0)),
            )
            for region, s in state["settled"].items()
        },
        settlements=int(state["settlements"]),
        cancel_requested=bool(state.get("cancel_requested")),
        dispatch_started=bool(state.get("dispatch_started")),
        last_settled_at=parse_iso(state["last_settled_at"]) if state.get("last_settled_at") else None,
        ended_at=parse_iso(state["ended_at"]) if state.get("ended_at") else None,
        rate=float(state.get("rate", 0)),
    )


def batch_write(
    table: str, record: NewBatch | BatchSettlement | BatchCancel | BatchDispatch
) -> dict[str, Any]:
    """A batch record as one TransactWriteItems element (its condition returns the item when it fails)."""
    match record:
        case NewBatch(batch):
            put = {
                "TableName": table,
                "Item": to_item(batch_item(batch)),
                "ConditionExpression": "attribute_not_exists(sk)",
            }
            return {"Put": {**put, **ALL_OLD}}
        case BatchSettlement(before, after):
            hold = B.open_hold(after)
            values: dict[str, Any] = {
                ":credits": hold.credits,
                ":funding": _funding(hold.funding),
                ":hold_status": hold.status,
                ":state": _state(after),
                ":n0": before.settlements,
            }
            expression = (
                "SET credits = :credits, funding = :funding, #status = :hold_status, batch_state = :state"
            )
            if after.ended_at is not None:
                expression += ", ended_at = :ended"
                values[":ended"] = iso(after.ended_at)
            return _update(table, before, expression, "batch_state.settlements = :n0", values)
        case BatchCancel():
            return _update(
                table,
                record,
                "SET batch_state.cancel_requested = :yes",
                "batch_state.cancel_requested = :no AND #status = :pending",
                {":yes": True, ":no": False, ":pending": "pending"},
            )
        case BatchDispatch():
            return _update(
                table,
                record,
                "SET batch_state.dispatch_started = :yes",
                "batch_state.dispatch_started = :no",
                {":yes": True, ":no": False},
            )
    raise TypeError(f"no DynamoDB write for {type(record).__name__}")


def _update(
    table: str, owner: Any, expression: str, condition: str, values: Mapping[str, Any]
) -> dict[str, Any]:
    request = {
        "TableName": table,
        "Key": C.hold_key(owner.account_id, owner.batch_id),
        "UpdateExpression": expression,
        "ConditionExpression": f"attribute_exists(batch_state) AND {condition}",
        "ExpressionAttributeValues": {name: to_value(value) for name, value in values.items()},
        **ALL_OLD,
    }
    if "#status" in expression or "#status" in condition:
        request["ExpressionAttributeNames"] = {"#status": "status"}
    return {"Update": request}


# ---- the messages -------------------------------------------------------------------------------------


def message_item(batch: B.Batch, message: B.Planned) -> dict[str, Any]:
    return {
        "pk": message_pk(batch.batch_id, message.position),
        "sk": message_sk(message.position),
        "type": "batch_message",
        **B.queued_record(batch, message),
    }


class DynamoBatchMessages:
    """A batch's message records: written in bulk once, then each moved forward by conditional writes."""

    def __init__(self, table_name: str, *, client: Any = None, sleep: Any = time.sleep) -> None:
        self.table = table_name
        self._client = client
        self._sleep = sleep
        self.requests = 0  # write requests made (the bench reads it)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    def write_all(self, batch: B.Batch, messages: Sequence[B.Planned]) -> None:
        """Every message record (status queued), 25 to a BatchWriteItem; what DynamoDB leaves unprocessed
        (throttling) is sent again after a growing pause."""
        for start in range(0, len(messages), BATCH_WRITE_LIMIT):
            pending = {
                self.table: [
                    {"PutRequest": {"Item": to_item(message_item(batch, message))}}
                    for message in messages[start : start + BATCH_WRITE_LIMIT]
                ]
            }
            for attempt in range(20):
                self.requests += 1
                answer = self.client.batch_write_item(RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}
                if not pending:
                    break
                self._sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError(f"batch {batch.batch_id}: records left unprocessed after 20 attempts")

    def read(self, batch_id: str, indexes: Sequence[int]) -> list[dict[str, Any]]:
        """The records of these messages (one slice: within one shard, one query)."""
        first, last = min(indexes), max(indexes)
        items = self._query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": to_value(message_pk(batch_id, first)),
                ":first": to_value(message_sk(first)),
                ":last": to_value(message_sk(last)),
            },
            ConsistentRead=True,
        )
        wanted = set(indexes)
        return [item for item in items if int(item["index"]) in wanted]

    def move(
        self, batch_id: str, moves: Sequence[tuple[int, str, Mapping[str, Any]]], expected: str
    ) -> list[int]:
        """Each (index, status, fields) from `expected` to `status`; the indexes that moved (never a swept one:
        the grace period settled it). One conditional transaction for them all; when one condition fails (a
        redelivered slice, a racing cancel), each is tried alone."""
        if not moves:
            return []
        writes = [self._move(batch_id, index, status, fields, expected) for index, status, fields in moves]
        if len(writes) <= TRANSACT_LIMIT:
            try:
                self.requests += 1
                self.client.transact_write_items(TransactItems=[{"Update": w} for w in writes])
                return [index for index, _, _ in moves]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
        moved = []
        for (index, _, _), write in zip(moves, writes, strict=True):
            if self._conditional(write):
                moved.append(index)
        return moved

    def callback(
        self, batch_id: str, index: int, status: str, sid: str, settled: Iterable[str]
    ) -> tuple[bool, str | None]:
        """A Twilio status on a handed-over message: moves it forward (`record_status`, Twilio's own as
        `provider_status`) provided no status in `settled` was recorded and its SID is the message's (or
        none is recorded yet). Answers whether it moved, and the record's sweep mark from the item the write
        returns (ALL_NEW when it lands, ALL_OLD when its condition refuses it): no read of its own."""
        keys = [f":s{i}" for i, _ in enumerate(sorted(settled))]
        values: dict[str, Any] = dict(zip(keys, sorted(settled), strict=True))
        values.update(
            {":record": B.record_status(status), ":status": status, ":sid": sid}
            | {":dispatching": B.DISPATCHING, ":sent": B.SENT}
        )
        condition = "#status IN (:dispatching, :sent) AND (attribute_not_exists(sid) OR sid = :sid)"
        if keys:
            condition += (
                f" AND (attribute_not_exists(provider_status) OR NOT provider_status IN ({', '.join(keys)}))"
            )
        moved, item = self._attempt(
            {
                "TableName": self.table,
                "Key": message_key(batch_id, index),
                "UpdateExpression": "SET #status = :record, provider_status = :status, sid = :sid",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {name: to_value(value) for name, value in values.items()},
                "ReturnValues": "ALL_NEW",
                **ALL_OLD,
            }
        )
        swept = from_item(item).get("swept") if item else None
        return moved, str(swept) if swept else None

    def _move(
        self, batch_id: str, index: int, status: str, fields: Mapping[str, Any], expected: str
    ) -> dict[str, Any]:
        names = {"#status": "status", **{f"#f{i}": name for i, name in enumerate(fields)}}
        values = {
            ":status": status,
            ":expected": expected,
            **{f":f{i}": v for i, v in enumerate(fields.values())},
        }
        sets = ["#status = :status", *(f"#f{i} = :f{i}" for i in range(len(fields)))]
        return {
            "TableName": self.table,
            "Key": message_key(batch_id, index),
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": "#status = :expected AND attribute_not_exists(swept)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {name: to_value(value) for name, value in values.items()},
        }

    def sweep(self, batch: B.Batch) -> int:
        """Mark every record with no final status as the grace period settles it (B.sweep_mark), each write
        conditional on the status it was read with; a record that moved meanwhile is read again. Returns
        how many were marked."""
        marked = 0
        for record in self.all(batch):
            for _ in range(8):
                mark = B.sweep_mark(record)
                if mark is None:
                    break
                index = int(record["index"])
                if self._conditional(
                    {
                        "TableName": self.table,
                        "Key": message_key(batch.batch_id, index),
                        "UpdateExpression": "SET swept = :mark",
                        "ConditionExpression": "#status = :seen AND attribute_not_exists(swept)",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":mark": to_value(mark),
                            ":seen": to_value(record["status"]),
                        },
                    }
                ):
                    marked += 1
                    break
                record = self._record(batch.batch_id, index)
            else:
                raise RuntimeError(f"batch {batch.batch_id}: message {record['index']} kept moving")
        return marked

    def _record(self, batch_id: str, index: int) -> dict[str, Any]:
        answer = self.client.get_item(
            TableName=self.table, Key=message_key(batch_id, index), ConsistentRead=True
        )
        return from_item(answer["Item"])

    def _conditional(self, write: Mapping[str, Any]) -> bool:
        return self._attempt(write)[0]

    def _attempt(self, write: Mapping[str, Any]) -> tuple[bool, Mapping[str, Any] | None]:
        """One conditional update, retried while DynamoDB is busy: (whether it landed, the item it returned:
        after it with ReturnValues, as it was when refused with ReturnValuesOnConditionCheckFailure)."""
        for attempt in range(8):
            try:
                self.requests += 1
                answer = self.client.update_item(**write)
                return True, answer.get("Attributes")
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    return False, error.response.get("Item")
                if code not in (
                    "ThrottlingException",
                    "ProvisionedThroughputExceededException",
                    "TransactionConflictException",
                ):
                    raise
                self._sleep(min(1.0, 0.05 * 2**attempt))
        raise RuntimeError(f"message record {write['Key']} kept being refused")

    def all(self, batch: B.Batch) -> Iterator[dict[str, Any]]:
        """Every record, in index order (a settlement's tally)."""
        for shard in range(self._shards(batch)):
            yield from self._query(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": to_value(f"BATCH#{batch.batch_id}#{shard:02d}")},
                ProjectionExpression="#i, #s, #r, #c, swept",
                ExpressionAttributeNames={"#i": "index", "#s": "status", "#r": "region", "#c": "credits"},
                ConsistentRead=True,
            )

    def page(
        self, batch: B.Batch, *, after: int, limit: int, status: str | None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to `limit` records after index `after`, of `status` when given; the last index when more may follow."""
        found: list[dict[str, Any]] = []
        for shard in range(max(after + 1, 0) // B.SHARD_SIZE, self._shards(batch)):
            kwargs: dict[str, Any] = {
                "KeyConditionExpression": "pk = :pk AND sk > :after",
                "ExpressionAttributeValues": {
                    ":pk": to_value(f"BATCH#{batch.batch_id}#{shard:02d}"),
                    ":after": to_value(message_sk(after) if after >= 0 else MESSAGE_PREFIX),
                },
            }
            if status:
                kwargs["FilterExpression"] = "#s = :status"
                kwargs["ExpressionAttributeNames"] = {"#s": "status"}
                kwargs["ExpressionAttributeValues"][":status"] = to_value(status)
            for item in self._query(**kwargs):
                found.append(item)
                if len(found) == limit:
                    return found, int(item["index"])
        return found, None

    def _shards(self, batch: B.Batch) -> int:
        return (batch.submitted + B.SHARD_SIZE - 1) // B.SHARD_SIZE

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return query_items(self.client, **{"TableName": self.table, **kwargs})
