"""One send (a reserve, then a post) on one account as raw DynamoDB requests, in each of the designs that
docs/design/concurrency.md compares; the items copy layers/core/smscredits/adapters/dynamo/codec.py's."""

from __future__ import annotations

import functools
import math
import queue
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from bench.common import CORE_LAYER

TABLE = "CreditsTable"
POOL = "purchased:AU"
START_CREDITS = 10_000_000
MAX_ATTEMPTS = 100  # per transaction: high enough that every send lands and its attempts can be counted
TODAY_LIMIT = 8  # the store's max_attempts today: a send needing more answers 503
# Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"), from botocore's own DynamoDB retry
# base of 50 ms (botocore/data/_retry.json), capped at 1 s.
JITTER_BASE, JITTER_CAP = 0.05, 1.0
# SQS FIFO to a Lambda event source mapping, producer to consumer: p50 28.1 ms, p90 61.2 ms (Bite-Sized
# Serverless, "Serverless Messaging: Latency Compared", eu-west-1, 2022). A FIFO batch holds at most 10
# messages and takes no batching window (AWS Lambda, "Lambda parameters for Amazon SQS event sources").
SQS_P50, SQS_P90, FIFO_BATCH = 28.1, 61.2, 10

PATTERNS = {
    "A": "today: reserve and post are each a transaction pinned to the balance's version; ALL_OLD on a "
    "stale version, a re-read on a conflict; today's backoff",
    "A2": "A with exponential backoff and full jitter",
    "B": "conditional arithmetic on the pool (no version pin); ledger entries keyed by time and hold id",
    "C": "reserve as A2 plus an open-hold marker; the post touches the hold and the marker, not the balance",
    "D": "one writer per account commits up to 10 waiting reserves in one transaction (SQS FIFO); post as C",
}


# ---- items, modelled on layers/core/smscredits/adapters/dynamo/codec.py ------------------------------


def _value(value: Any) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    return dict(TypeSerializer().serialize(value))


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _value(value) for key, value in values.items() if value is not None}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def balance_item(account_id: str) -> dict[str, Any]:
    """The account item exactly as the store writes it (its real attributes, so its real size)."""
    if str(CORE_LAYER) not in sys.path:
        sys.path.append(str(CORE_LAYER))
    from smscredits.adapters.dynamo.codec import account_item
    from smscredits.domain.account import Account
    from smscredits.domain.catalog import PLANS

    account = Account(
        account_id=account_id,
        plan="growth",
        credit_model="segment",
        home_region="AU",
        billing_anchor=date(2026, 1, 5),
        created_at=datetime(2026, 1, 5, tzinfo=UTC),
        period_start=date(2026, 11, 5),
        next_refresh_at=datetime(2026, 12, 5, tzinfo=UTC),
        allowance=PLANS["growth"],
        pools={"included": 0, POOL: START_CREDITS},
        held=0,
        version=1,
    )
    return _item(account_item(account))


def hold_item(account_id: str, hold_id: str) -> dict[str, Any]:
    return _item(
        {
            "pk": f"ACCT#{account_id}",
            "sk": f"HOLD#{hold_id}",
            "type": "hold",
            "account_id": account_id,
            "hold_id": hold_id,
            "status": "pending",
            "credits": 1,
            "funding": [{"pool": POOL, "credits": 1}],
            "period_start": "2026-11-05",
            "created_at": _now(),
            "request_hash": uuid.uuid4().hex + uuid.uuid4().hex,
            "attempt_id": uuid.uuid4().hex,
            "message": {"to": "+61491570110", "region": "AU", "segments": 1, "encoding": "GSM-7"},
            "sweep_shard": "SW#03",
            "sweep_after": _now(),
        }
    )


def ledger_item(
    account_id: str, sk: str, kind: str, amount: int, op_id: str, after: int | None
) -> dict[str, Any]:
    return _item(
        {
            "pk": f"ACCT#{account_id}",
            "sk": sk,
            "type": "ledger",
            "entry_id": f"{account_id}:{sk}",
            "account_id": account_id,
            "kind": kind,
            "pool": POOL,
            "amount": amount,
            "balance_after": after,
            "created_at": _now(),
            "op_id": op_id,
            "reference": {"message_id": op_id.split(":")[-1], "to": "+61******110"},
        }
    )


def key(account_id: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": f"ACCT#{account_id}"}, "sk": {"S": sk}}


def ledger_sk(version: int, index: int = 0) -> str:
    return f"LEDGER#{version:012d}#{index:02d}"


class PostGaveUp(RuntimeError):
    """The reserve landed and the post did not, in MAX_ATTEMPTS: the hold stays pending."""


def posted(post: Callable[[], int]) -> int:
    try:
        return post()
    except RuntimeError as error:
        raise PostGaveUp(str(error)) from error


# ---- what DynamoDB bills ---------------------------------------------------------------------------


def write_units_per_send(pattern: str, batch: float = 1.0) -> float:
    """Write units one send costs on the account's partition: 2 per started KB of each transactional item
    (AWS, "Capacity management for transactions"); all of an account's items share its partition key."""
    from local.dynamo_fidelity import item_size

    account, hold = "hot-account-0000", uuid.uuid4().hex

    def units(*items: dict[str, Any]) -> int:
        return sum(2 * max(1, math.ceil(item_size(item) / 1024)) for item in items)

    balance, held = balance_item(account), hold_item(account, hold)
    entry = ledger_item(account, ledger_sk(1), "hold", -1, f"hold:{hold}", START_CREDITS)
    marker = _item({"pk": f"ACCT#{account}", "sk": f"OPEN#{hold}", "credits": 1})
    if pattern in ("A", "A2", "B"):
        return units(balance, held, entry) + units(balance, held, entry)
    post = units(held, marker, entry)
    if pattern == "C":
        return units(balance, held, entry, marker) + post
    if pattern == "D":
        return (units(balance) + batch * units(held, marker, entry)) / batch + post
    return units(balance) / 2  # the bare UpdateItem: 1 per started KB, not in a transaction


# ---- what one client observed -----------------------------------------------------------------------


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0  # requests cancelled or refused for TransactionConflict
    stale: int = 0  # version conditions that failed (another writer landed first)
    throttles: int = 0
    over_today: int = 0  # sends with a transaction that needed more than TODAY_LIMIT attempts
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    pending: int = 0  # sends whose reserve landed and whose post gave up: their hold stays pending
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.requests.update(other.requests)
        self.conflicts += other.conflicts
        self.stale += other.stale
        self.throttles += other.throttles
        self.over_today += other.over_today
        self.latencies.extend(other.latencies)
        self.failures += other.failures
        self.pending += other.pending
        self.errors.update(other.errors)


class Client:
    """One client's DynamoDB connection, counting every request and sorting every refusal."""

    def __init__(self, endpoint: str) -> None:
        from botocore.config import Config

        from local.moto_dynamo import moto_client

        # No SDK retries: each pattern retries itself, and every request is counted.
        self.ddb = moto_client(endpoint, Config(retries={"max_attempts": 1}, max_pool_connections=2))
        self.tally = Tally()
        self.ddb.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.tally.requests[model.name] += 1

    def transact(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """None if it landed, else the cancellation reasons (conflicts and throttles are tallied)."""
        from botocore.exceptions import ClientError

        try:
            self.ddb.transact_write_items(TransactItems=items)
            return None
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code != "TransactionCanceledException":
                if code == "ThrottlingException":
                    self.tally.throttles += 1
                    return [{"Code": "ThrottlingError"}]
                raise
            reasons: list[dict[str, Any]] = error.response["CancellationReasons"]
            codes = {reason["Code"] for reason in reasons}
            self.tally.conflicts += "TransactionConflict" in codes
            self.tally.throttles += "ThrottlingError" in codes
            self.tally.stale += reasons[0]["Code"] == "ConditionalCheckFailed"
            return reasons

    def balance(self, account_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.ddb.get_item(
            TableName=TABLE, Key=key(account_id, "ACCOUNT"), ConsistentRead=True
        )["Item"]
        return item


def today_backoff(attempt: int) -> None:
    """The commit engine's backoff before issue 14 (CommitEngine._backoff)."""
    time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))


def full_jitter(attempt: int) -> None:
    time.sleep(random.uniform(0, min(JITTER_CAP, JITTER_BASE * 2**attempt)))


# ---- pattern A / A2: version-pinned transactions (today) ---------------------------------------------


class Pinned:
    """Today's write path: the balance pinned to the version the plan came from, retried from ALL_OLD."""

    def __init__(self, client: Client, account_id: str, backoff: Callable[[int], None], marker: bool) -> None:
        self.client, self.account_id, self.backoff, self.marker = client, account_id, backoff, marker
        self.state: dict[str, Any] | None = None  # the warm process's last known balance item

    def commit(self, plan: Callable[[dict[str, Any]], tuple[dict[str, Any], list[dict[str, Any]]]]) -> int:
        """Apply plan(balance) → (new balance attributes, other items); returns attempts used."""
        state = self.state or self.client.balance(self.account_id)
        for attempt in range(MAX_ATTEMPTS):
            sets, others = plan(state)
            version = int(state["version"]["N"])
            update = {
                "Update": {
                    "TableName": TABLE,
                    "Key": key(self.account_id, "ACCOUNT"),
                    "UpdateExpression": "SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(sets))),
                    "ConditionExpression": "#version = :v",
                    "ExpressionAttributeNames": {
                        "#version": "version",
                        **{f"#a{i}": n for i, n in enumerate(sets)},
                    },
                    "ExpressionAttributeValues": {
                        ":v": {"N": str(version)},
                        **{f":a{i}": v for i, v in enumerate(sets.values())},
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            reasons = self.client.transact([update, *others])
            if reasons is None:
                self.state = {**state, **sets}
                return attempt + 1
            if reasons[0]["Code"] == "ConditionalCheckFailed" and reasons[0].get("Item"):
                state = reasons[0]["Item"]  # stale: plan again from what it is now
                if attempt:
                    self.backoff(attempt)
            else:
                self.backoff(attempt)  # a conflict or a throttle: spread out, then read it again
                state = self.client.balance(self.account_id)
        raise RuntimeError("no attempt landed")

    def send(self) -> int:
        hold_id = uuid.uuid4().hex

        def reserve(state: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            version = int(state["version"]["N"]) + 1
            pools = {name: int(v["N"]) for name, v in state["pools"]["M"].items()}
            pools[POOL] -= 1
            sets: dict[str, Any] = {
                "pools": _value(pools),
                "version": _value(version),
                "updated_at": _value(_now()),
            }
            if not self.marker:
                sets["held"] = _value(int(state["held"]["N"]) + 1)
            others = [
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": hold_item(self.account_id, hold_id),
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                },
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": ledger_item(
                            self.account_id, ledger_sk(version), "hold", -1, f"hold:{hold_id}", pools[POOL]
                        ),
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                },
            ]
            if self.marker:
                others.append(
                    {
                        "Put": {
                            "TableName": TABLE,
                            "Item": _item(
                                {"pk": f"ACCT#{self.account_id}", "sk": f"OPEN#{hold_id}", "credits": 1}
                            ),
                        }
                    }
                )
            return sets, others

        def post(state: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            version = int(state["version"]["N"]) + 1
            after = int(state["pools"]["M"][POOL]["N"])
            sets = {
                "held": _value(int(state["held"]["N"]) - 1),
                "version": _value(version),
                "updated_at": _value(_now()),
            }
            return sets, [
                hold_update(self.account_id, hold_id),
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": ledger_item(
                            self.account_id, ledger_sk(version), "post", 0, f"posted:{hold_id}", after
                        ),
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                },
            ]

        attempts = self.commit(reserve)
        if self.marker:
            return max(attempts, posted(lambda: post_without_balance(self.client, self.account_id, hold_id)))
        return max(attempts, posted(lambda: self.commit(post)))


def hold_update(account_id: str, hold_id: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": TABLE,
            "Key": key(account_id, f"HOLD#{hold_id}"),
            "UpdateExpression": "SET #status = :posted, ended_at = :now, provider = :provider "
            "REMOVE sweep_shard, sweep_after",
            "ConditionExpression": "#status = :pending",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":posted": {"S": "posted"},
                ":pending": {"S": "pending"},
                ":now": {"S": _now()},
                ":provider": _value({"sid": "SM" + uuid.uuid4().hex, "status": "queued"}),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def retried(client: Client, items: Callable[[], list[dict[str, Any]]]) -> int:
    """Send the same transaction until it lands, full jitter between attempts; returns attempts used."""
    for attempt in range(MAX_ATTEMPTS):
        reasons = client.transact(items())
        if reasons is None:
            return attempt + 1
        if not any(r["Code"] in ("TransactionConflict", "ThrottlingError") for r in reasons):
            raise RuntimeError(f"refused: {reasons}")
        full_jitter(attempt)
    raise RuntimeError("no attempt landed")


def post_without_balance(client: Client, account_id: str, hold_id: str) -> int:
    """C's and D's post: the hold is posted and its open-hold marker goes; the balance is not touched."""
    return retried(
        client,
        lambda: [
            hold_update(account_id, hold_id),
            {
                "Delete": {
                    "TableName": TABLE,
                    "Key": key(account_id, f"OPEN#{hold_id}"),
                    "ConditionExpression": "attribute_exists(sk)",
                }
            },
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": ledger_item(
                        account_id, f"LEDGER#post#{hold_id}", "post", 0, f"posted:{hold_id}", None
                    ),
                }
            },
        ],
    )


# ---- pattern B: conditional arithmetic -----------------------------------------------------------------


def arithmetic_send(client: Client, account_id: str) -> int:
    hold_id = uuid.uuid4().hex

    def balance(expression: str, condition: str | None) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": TABLE,
            "Key": key(account_id, "ACCOUNT"),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": {":c": {"N": "1"}, ":now": {"S": _now()}},
        }
        if "#p" in expression:
            update["ExpressionAttributeNames"] = {"#p": POOL}
        if condition:
            update["ConditionExpression"] = condition
        return {"Update": update}

    def entry(kind: str, amount: int) -> dict[str, Any]:
        # Ordered by time then hold id: no version to key it by, and no balance_after (the writer does not
        # know the balance its arithmetic produced).
        sk = f"LEDGER#{_now()}#{hold_id}#{kind}"
        return {
            "Put": {
                "TableName": TABLE,
                "Item": ledger_item(account_id, sk, kind, amount, f"{kind}:{hold_id}", None),
            }
        }

    reserve = retried(
        client,
        lambda: [
            balance("SET pools.#p = pools.#p - :c, held = held + :c, updated_at = :now", "pools.#p >= :c"),
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": hold_item(account_id, hold_id),
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            },
            entry("hold", -1),
        ],
    )
    post = posted(
        lambda: retried(
            client,
            lambda: [
                balance("SET held = held - :c, updated_at = :now", None),
                hold_update(account_id, hold_id),
                entry("post", 0),
            ],
        )
    )
    return max(reserve, post)


# ---- pattern D: one writer per account ---------------------------------------------------------------


@dataclass
class Waiting:
    hold_id: str
    done: threading.Event = field(default_factory=threading.Event)


class GroupWriter:
    """The per-account consumer of an SQS FIFO group: takes up to FIFO_BATCH waiting reserves and commits
    them in one transaction pinned to the balance it alone writes."""

    def __init__(self, client: Client, account_id: str) -> None:
        self.client, self.account_id = client, account_id
        self.inbox: queue.Queue[Waiting | None] = queue.Queue()
        self.pinned = Pinned(client, account_id, full_jitter, marker=True)
        self.batches: list[int] = []
        self.thread = threading.Thread(target=self._run, name="group-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            first = self.inbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < FIFO_BATCH:
                try:
                    more = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.inbox.put(None)
                    break
                batch.append(more)
            self.pinned.commit(functools.partial(self._plan, batch=batch))
            self.batches.append(len(batch))
            for waiting in batch:
                waiting.done.set()

    def _plan(
        self, state: dict[str, Any], batch: list[Waiting]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        version = int(state["version"]["N"]) + 1
        pools = {name: int(v["N"]) for name, v in state["pools"]["M"].items()}
        others: list[dict[str, Any]] = []
        for index, waiting in enumerate(batch):
            pools[POOL] -= 1
            others += [
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": hold_item(self.account_id, waiting.hold_id),
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                },
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": _item(
                            {"pk": f"ACCT#{self.account_id}", "sk": f"OPEN#{waiting.hold_id}", "credits": 1}
                        ),
                    }
                },
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": ledger_item(
                            self.account_id,
                            ledger_sk(version, index),
                            "hold",
                            -1,
                            f"hold:{waiting.hold_id}",
                            pools[POOL],
                        ),
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                },
            ]
        sets = {"pools": _value(pools), "version": _value(version), "updated_at": _value(_now())}
        return sets, others

    def stop(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=60)


def sqs_leg() -> float:
    sigma = math.log(SQS_P90 / SQS_P50) / 1.2815515655446004
    return SQS_P50 * math.exp(sigma * random.normalvariate()) / 1000


def grouped_send(client: Client, account_id: str, writer: GroupWriter) -> int:
    waiting = Waiting(uuid.uuid4().hex)
    time.sleep(sqs_leg())  # SendMessage to the FIFO queue and the event source's delivery to the writer
    writer.inbox.put(waiting)
    waiting.done.wait(120)
    # The send function learns the outcome from DynamoDB (it has no channel from the writer): one read.
    client.ddb.get_item(TableName=TABLE, Key=key(account_id, f"HOLD#{waiting.hold_id}"), ConsistentRead=True)
    return posted(lambda: post_without_balance(client, account_id, waiting.hold_id))


# ---- the bare conditional write ------------------------------------------------------------------------


def bare_write(client: Client, account_id: str) -> int:
    from botocore.exceptions import ClientError

    for attempt in range(MAX_ATTEMPTS):
        try:
            client.ddb.update_item(
                TableName=TABLE,
                Key=key(account_id, "COUNTER"),
                UpdateExpression="SET n = n + :one",
                ConditionExpression="n < :cap",
                ExpressionAttributeValues={":one": {"N": "1"}, ":cap": {"N": "1000000000"}},
            )
            return attempt + 1
        except ClientError as error:
            if error.response["Error"]["Code"] != "ThrottlingException":
                raise
            client.tally.throttles += 1
            full_jitter(attempt)
    raise RuntimeError("no attempt landed")
