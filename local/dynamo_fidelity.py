"""What real DynamoDB does under concurrency and moto does not: request latency, transaction conflicts and
per-partition throughput limits, added around moto's DynamoDB request handler (server and mock_aws alike).

Each behaviour follows AWS's documentation; docs/design/concurrency.md gives the sources and figures.

- Latency. Every request waits a lognormal time fitted to a measured p50 and p95 for its class (single-item
  read, single-item write, TransactWriteItems, TransactGetItems) before moto answers it.
- TransactionConflict. A TransactWriteItems holds every item it names for its whole latency window (its
  prepare and commit phases). Another TransactWriteItems naming one of them is cancelled at once with
  `TransactionCanceledException`, reason `TransactionConflict` on that item and `None` on the others; a
  PutItem/UpdateItem/DeleteItem that lands on a held item gets `TransactionConflictException`; a
  TransactGetItems naming a held item is cancelled the same way. GetItem, Query and Scan read the committed
  state and are never refused ("both operations can succeed").
- Throughput. A token bucket per partition key value: 1,000 write units per second (an item's units are
  ceil(size / 1 KB); 2 per KB per item in a transaction) and 3,000 read units (ceil(size / 4 KB) for a
  strongly consistent read, half for an eventually consistent one; 2 per 4 KB per item in a transaction),
  each holding at most one second's worth. Over the limit a single request gets `ThrottlingException`
  (the table is on-demand) and a transaction is cancelled with `ThrottlingError` on the items of that
  partition. Nothing is written by a refused or cancelled request.
- Counters. Every request is counted by caller and operation, with the TransactionConflicts and throttles
  it met (`counters()`; local mode serves them at GET /__local/dynamo). The caller is the `app/<id>` part of
  the SDK's User-Agent (local mode's workers set AWS_SDK_UA_APP_ID to their function's name), else "other";
  a refused request is also counted as `!conflict`, `!throttle` or `!condition`.

Environment (read by `Fidelity.from_environment`):

    LOCAL_DYNAMO_FIDELITY       on | off     everything below; default on in local mode and benchmarks
    LOCAL_DYNAMO_LATENCY        off, or class=p50/p95 in ms, comma-separated (classes: read, write,
                                transact_write, transact_get); unnamed classes keep their defaults
    LOCAL_DYNAMO_CONFLICTS      on | off     TransactionConflict (default on)
    LOCAL_DYNAMO_PARTITION_WCU  write units per second per partition key value, 0 = no limit (1000)
    LOCAL_DYNAMO_PARTITION_RCU  read units per second per partition key value, 0 = no limit (3000)
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException, TransactionCanceledException
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.responses import DynamoHandler

READ, WRITE, TRANSACT_WRITE, TRANSACT_GET = "read", "write", "transact_write", "transact_get"
CLASSES = (READ, WRITE, TRANSACT_WRITE, TRANSACT_GET)
Z95 = 1.6448536269514722  # the standard normal's 95th percentile

CONFLICT_MESSAGE = "Transaction is ongoing for the item"
THROTTLE_MESSAGE = (
    "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your "
    "table or index so please try again shortly. If exceptions persist, check if you have a hot key: "
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"
)

ItemKey = tuple[str, Any, Any]  # (table name, hash key value, range key value or None) as moto DynamoTypes


@dataclass(frozen=True)
class Latency:
    """A lognormal request latency, fixed by its median and 95th percentile (milliseconds)."""

    p50_ms: float
    p95_ms: float

    def sample(self) -> float:
        """One request's latency in seconds."""
        if self.p50_ms <= 0:
            return 0.0
        sigma = math.log(max(self.p95_ms, self.p50_ms) / self.p50_ms) / Z95
        return self.p50_ms * math.exp(sigma * random.normalvariate()) / 1000


NO_LATENCY = Latency(0, 0)


@dataclass(frozen=True)
class Fidelity:
    """Which of DynamoDB's behaviours the stand-in adds, with what parameters."""

    latency: Mapping[str, Latency] = field(default_factory=dict)
    conflicts: bool = False
    partition_wcu: float = 0
    partition_rcu: float = 0

    @property
    def active(self) -> bool:
        return bool(self.conflicts or self.partition_wcu or self.partition_rcu or self.latency)

    def latency_of(self, kind: str) -> Latency:
        return self.latency.get(kind, NO_LATENCY)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, *, default_on: bool) -> Fidelity:
        """The configuration the LOCAL_DYNAMO_* variables ask for (see the module docstring)."""
        env = os.environ if environ is None else environ
        if not _switch(env, "LOCAL_DYNAMO_FIDELITY", default_on):
            return OFF
        return replace(
            AWS,
            latency=_latencies(env.get("LOCAL_DYNAMO_LATENCY", "")),
            conflicts=_switch(env, "LOCAL_DYNAMO_CONFLICTS", True),
            partition_wcu=float(env.get("LOCAL_DYNAMO_PARTITION_WCU") or AWS.partition_wcu),
            partition_rcu=float(env.get("LOCAL_DYNAMO_PARTITION_RCU") or AWS.partition_rcu),
        )


OFF = Fidelity()
# Latency: p50 / p95 client-observed from Lambda in the same Region (A. DeBrie's published PutItem and
# 5-item TransactWriteItems runs). No read figure was found: reads take the single-write figure, an upper
# bound (a strongly consistent read is served by the partition's leader without a replication round).
# TransactGetItems takes the transactional write figure (two phases as well).
AWS = Fidelity(
    latency={
        READ: Latency(7.55, 13.2),
        WRITE: Latency(7.55, 13.2),
        TRANSACT_WRITE: Latency(25.3, 36.4),
        TRANSACT_GET: Latency(25.3, 36.4),
    },
    conflicts=True,
    partition_wcu=1000,
    partition_rcu=3000,
)


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"{name} must be on or off, not {value!r}")


def _latencies(spec: str) -> dict[str, Latency]:
    spec = spec.strip()
    if spec.lower() == "off":
        return {}
    latencies = dict(AWS.latency)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, figures = part.partition("=")
        p50, _, p95 = figures.partition("/")
        if kind.strip() not in CLASSES or not p50:
            raise ValueError(
                f"LOCAL_DYNAMO_LATENCY: expected class=p50/p95 with a class of {CLASSES}: {part!r}"
            )
        latencies[kind.strip()] = Latency(float(p50), float(p95 or p50))
    return latencies


# ---- errors, as DynamoDB sends them -----------------------------------------------------------------


class TransactionConflictException(DynamodbException):
    def __init__(self) -> None:
        super().__init__(ERROR_TYPE_PREFIX + "TransactionConflictException", CONFLICT_MESSAGE)


class ThrottlingException(DynamodbException):
    """What an on-demand table answers for a hot partition, the reason naming the key range."""

    def __init__(self, table_arn: str, operation: str) -> None:
        super().__init__("com.amazon.coral.availability#ThrottlingException", THROTTLE_MESSAGE)
        reason = f"Table{operation}KeyRangeThroughputExceeded"
        self.description = json.dumps(
            {
                "__type": self.error_type,
                "message": THROTTLE_MESSAGE,
                "throttlingReasons": [{"reason": reason, "resource": table_arn}],
            }
        )


def _cancelled(reasons: list[str | None]) -> TransactionCanceledException:
    messages = {"TransactionConflict": CONFLICT_MESSAGE, "ThrottlingError": THROTTLE_MESSAGE}
    return TransactionCanceledException([(code, messages.get(code or ""), None) for code in reasons])


# ---- state ------------------------------------------------------------------------------------------


class _Bucket:
    """Units per second, holding at most one second's worth (refilled continuously)."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


@dataclass
class _State:
    lock: Any  # moto_dynamo's lock: every check-and-apply below is atomic with moto's own work
    fidelity: Fidelity = OFF
    held: dict[ItemKey, int] = field(default_factory=dict)  # item → the in-flight transaction holding it
    buckets: dict[tuple[str, Any, str], _Bucket] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    # (caller, operation or outcome) → count, since the process started (configure() does not reset them)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def afford(self, demands: Mapping[tuple[str, Any, str], float]) -> set[tuple[str, Any, str]]:
        """Take every demand (partition → units) if all can be met; else take none and name the short ones."""
        now = time.monotonic()
        short = set()
        for partition, units in demands.items():
            rate = self.fidelity.partition_wcu if partition[2] == "W" else self.fidelity.partition_rcu
            if not rate:
                continue
            bucket = self.buckets.setdefault(partition, _Bucket(rate, now))
            bucket.refill(now)
            if bucket.tokens < units:
                short.add(partition)
        if not short:
            for partition, units in demands.items():
                if partition in self.buckets:
                    self.buckets[partition].tokens -= units
        return short


_state: _State | None = None


def configure(fidelity: Fidelity) -> Fidelity:
    """Switch the behaviours on or off for this process (state starts afresh); returns the previous one."""
    if _state is None:
        raise RuntimeError("local.moto_dynamo.patch_moto() installs the fidelity layer first")
    with _state.lock:
        previous = _state.fidelity
        _state.fidelity = fidelity
        _state.held.clear()
        _state.buckets.clear()
    return previous


def current() -> Fidelity:
    return _state.fidelity if _state is not None else OFF


def holding() -> int:
    """How many items in-flight transactions hold right now (tests wait on it to act inside a window)."""
    if _state is None:
        return 0
    with _state.lock:
        return len(_state.held)


def counters() -> dict[str, dict[str, int]]:
    """Requests per caller and operation since the process started, and how many of each caller's requests
    were refused by a `TransactionConflict` (a cancellation reason or TransactionConflictException), a
    throttle or a failed condition, keyed `!conflict`, `!throttle`, `!condition`. A reader takes two
    snapshots and subtracts."""
    if _state is None:
        return {}
    with _state.lock:
        counts = dict(_state.counts)
    found: dict[str, dict[str, int]] = {}
    for (caller, name), count in sorted(counts.items()):
        found.setdefault(caller, {})[name] = count
    return found


_APP_ID = re.compile(r"\bapp/(\S+)")


def _caller(handler: Handler) -> str:
    headers = getattr(handler, "headers", None) or {}
    found = _APP_ID.search(str(headers.get("User-Agent", "")))
    return found.group(1) if found else "other"


def _outcome(error: Exception) -> str | None:
    """What refused the request: "!conflict", "!throttle" or "!condition" (a condition that failed, a
    stale version among them); None for anything else."""
    text = f"{getattr(error, 'error_type', '')} {getattr(error, 'message', '')}"
    for marker, outcome in (
        ("TransactionConflict", "!conflict"),
        ("Throttling", "!throttle"),
        ("ConditionalCheckFailed", "!condition"),
    ):
        if marker in text:
            return outcome
    return None


# ---- the layer --------------------------------------------------------------------------------------

Handler = Any  # moto.dynamodb.responses.DynamoHandler: `body` is the request, `dynamodb_backend` moto's state
Original = Callable[[Handler], Any]


def install(lock: Any) -> None:
    """Wrap moto's DynamoDB request handler once. Until `configure` switches something on it adds nothing."""
    global _state
    if _state is not None:
        return
    _state = _State(lock)
    wrappers: dict[str, Callable[[Handler, Original, Fidelity], Any]] = {
        "get_item": _get_item,
        "query": _query,
        "scan": _plain_read,
        "batch_get_item": _plain_read,
        "put_item": _single_write,
        "update_item": _single_write,
        "delete_item": _single_write,
        "batch_write_item": _batch_write,
        "transact_write_items": _transact_write,
        "transact_get_items": _transact_get,
    }
    for name, around in wrappers.items():
        setattr(DynamoHandler, name, _wrap(getattr(DynamoHandler, name), around))


def _wrap(
    original: Original, around: Callable[[Handler, Original, Fidelity], Any]
) -> Callable[[Handler], Any]:
    def method(handler: Handler) -> Any:
        assert _state is not None
        caller = _caller(handler)
        with _state.lock:
            _state.counts[caller, original.__name__] += 1
        fidelity = _state.fidelity
        if not fidelity.active:
            return original(handler)
        try:
            return around(handler, original, fidelity)
        except Exception as error:
            outcome = _outcome(error)
            if outcome is not None:
                with _state.lock:
                    _state.counts[caller, outcome] += 1
            raise

    method.__name__ = original.__name__
    return method


def _table(handler: Handler, name: str) -> Any:
    return handler.dynamodb_backend.get_table(name)


def _key(table: Any, attributes: Mapping[str, Any]) -> ItemKey | None:
    """The item's key as moto stores it, or None if the request lacks it (moto then answers the error)."""
    if table.hash_key_attr not in attributes:
        return None
    range_attr = table.range_key_attr
    if range_attr is not None and range_attr not in attributes:
        return None
    hash_value = DynamoType(attributes[table.hash_key_attr])
    range_value = DynamoType(attributes[range_attr]) if range_attr is not None else None
    return table.name, hash_value, range_value


def _stored_size(handler: Handler, key: ItemKey) -> int:
    table = handler.dynamodb_backend.tables.get(key[0])
    bucket = table.items.get(key[1]) if table is not None else None
    if bucket is None:
        return 0
    item = bucket.get(key[2]) if key[2] is not None else bucket
    return int(item.size()) if item is not None else 0


def item_size(attributes: Mapping[str, Any] | None) -> int:
    """An item's size as DynamoDB counts it: attribute names plus values."""
    return sum(len(name.encode()) + DynamoType(value).size() for name, value in (attributes or {}).items())


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


def _partition(key: ItemKey, kind: str) -> tuple[str, Any, str]:
    return key[0], key[1], kind


def _throttled(table: Any, operation: str) -> ThrottlingException:
    return ThrottlingException(table.table_arn, operation)


# -- reads: committed state, never refused by a transaction -------------------------------------------


def _plain_read(handler: Handler, original: Original, fidelity: Fidelity) -> Any:
    time.sleep(fidelity.latency_of(READ).sample())
    return original(handler)


def _get_item(handler: Handler, original: Original, fidelity: Fidelity) -> Any:
    assert _state is not None
    body = handler.body
    time.sleep(fidelity.latency_of(READ).sample())
    table = _table(handler, body["TableName"])
    key = _key(table, body.get("Key", {}))
    with _state.lock:
        if key is not None:
            units = _units(_stored_size(handler, key), 4096) / (1 if body.get("ConsistentRead") else 2)
            if _state.afford({_partition(key, "R"): units}):
                raise _throttled(table, "Read")
        return original(handler)


def _query(handler: Handler, original: Original, fidelity: Fidelity) -> Any:
    assert _state is not None
    body = handler.body
    time.sleep(fidelity.latency_of(READ).sample())
    with _state.lock:
        result = original(handler)
        if body.get("IndexName"):
            return result  # an index's partitions are not the table's; not modelled
        items = getattr(result, "result", {}).get("Items") or []
        if not items:
            return result
        table = _table(handler, body["TableName"])
        key = _key(table, items[0])
        if key is None:
            return result
        units = _units(sum(item_size(item) for item in items), 4096) / (
            1 if body.get("ConsistentRead") else 2
        )
        if _state.afford({_partition(key, "R"): units}):
            raise _throttled(table, "Read")  # nothing changed, so the answer is simply withheld
        return result


# -- single writes: land at the end of their latency, refused if a transaction holds the item ---------


def _single_write(handler: Handler, original: Original, fidelity: Fidelity) -> Any:
    assert _state is not None
    body = handler.body
    time.sleep(fidelity.latency_of(WRITE).sample())
    table = _table(handler, body["TableName"])
    item = body.get("Item")
    key = _key(table, item if item is not None else body.get("Key", {}))
    if key is None:
        return original(handler)
    with _state.lock:
        if fidelity.conflicts and key in _state.held:
            raise TransactionConflictException()
        size = max(_stored_size(handler, key), item_size(item or body.get("ExpressionAttributeValues")))
        if _state.afford({_partition(key, "W"): _units(size, 1024)}):
            raise _throttled(table, "Write")
        return original(handler)


def _batch_write(handler: Handler, original: Original, fidelity: Fidelity) -> Any:
    """One write latency for the batch; its items are not checked against transactions or partitions (moto
    would apply the batch partly before refusing an item, where DynamoDB returns UnprocessedItems)."""
    time.sleep(fidelity.latency_of(WRITE).sample())
    return original(handler)


# -- transactions -------------------------------------------------------------------------------------


def _transact_keys(handler: Handler, entries: list[dict[str, Any]]) -> list[ItemKey | None]:
    keys: list[ItemKey | None] = []
    for entry in entries:
        action = next(iter(entry.values()))
        table = handler.dynamodb_backend.tables.get(action.get("TableName"))
        if table is None:
            keys.append(None)
            continue
        keys.append(_key(table, action["Item"] if "Item" in action else action.get("Key", {})))
    return keys


def _transact_write(handler: Handler, original: Original, fidelity: Fidelity) -> Any:
    assert _state is not None
    entries = handler.body.get("TransactItems") or []
    keys = _transact_keys(handler, entries)
    if None in keys or len(set(keys)) != len(keys):
        return original(handler)  # moto's validation answers it (unknown table, missing key, same item twice)
    item_keys: list[ItemKey] = [key for key in keys if key is not None]
    latency = fidelity.latency_of(TRANSACT_WRITE).sample()
    with _state.lock:
        reasons: list[str | None] = []
        if fidelity.conflicts and any(key in _state.held for key in item_keys):
            reasons = ["TransactionConflict" if key in _state.held else None for key in item_keys]
        else:
            demands: dict[tuple[str, Any, str], float] = {}
            for key, entry in zip(item_keys, entries, strict=True):
                action = next(iter(entry.values()))
                written = action.get("Item") or action.get("ExpressionAttributeValues")
                size = max(_stored_size(handler, key), item_size(written))
                partition = _partition(key, "W")
                demands[partition] = demands.get(partition, 0) + 2 * _units(size, 1024)
            short = _state.afford(demands)
            if short:
                reasons = ["ThrottlingError" if _partition(key, "W") in short else None for key in item_keys]
        if not reasons:
            transaction = next(_state.ids)
            for key in item_keys:
                _state.held[key] = transaction
    if reasons:
        time.sleep(latency)
        raise _cancelled(reasons)
    try:
        time.sleep(latency)
        with _state.lock:
            return original(handler)
    finally:
        with _state.lock:
            for key in item_keys:
                if _state.held.get(key) == transaction:
                    del _state.held[key]


def _transact_get(handler: Handler, original: Original, fidelity: Fidelity) -> Any:
    assert _state is not None
    entries = handler.body.get("TransactItems") or []
    keys = _transact_keys(handler, entries)
    time.sleep(fidelity.latency_of(TRANSACT_GET).sample())
    if None in keys:
        return original(handler)
    item_keys: list[ItemKey] = [key for key in keys if key is not None]
    with _state.lock:
        if fidelity.conflicts and any(key in _state.held for key in item_keys):
            raise _cancelled(["TransactionConflict" if key in _state.held else None for key in item_keys])
        demands: dict[tuple[str, Any, str], float] = {}
        for key in item_keys:
            partition = _partition(key, "R")
            demands[partition] = demands.get(partition, 0) + 2 * _units(_stored_size(handler, key), 4096)
        short = _state.afford(demands)
        if short:
            raise _cancelled(
                ["ThrottlingError" if _partition(key, "R") in short else None for key in item_keys]
            )
        return original(handler)
