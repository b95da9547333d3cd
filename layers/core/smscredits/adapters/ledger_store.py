"""The ledger on DynamoDB: every credit movement is one transaction of the account's balance item
(pinned to the version its plan was computed from), the immutable ledger entries, and a guard item
whose `attribute_not_exists` condition makes the operation idempotent by a caller-supplied id.

A warm process keeps the last balance it wrote per account, so a movement costs one request and no
read; when that view is stale the failed condition returns the current item (ALL_OLD) and the plan is
recomputed once from it. Nothing here reads a balance and writes it back without the version condition.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from smscredits.adapters.dynamo import (
    ACCOUNT_SK,
    REFRESH_SHARDS,
    SWEEP_SHARDS,
    account_pk,
    dynamodb_client,
    from_item,
    guard_sk,
    hold_sk,
    ledger_sk,
    shard_of,
    to_item,
    to_value,
)
from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold
from smscredits.domain.catalog import DEFAULT_LEGACY_CREDITS_PER_MESSAGE, PLANS
from smscredits.domain.errors import (
    AccountExists,
    DomainError,
    HoldEnded,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    UpstreamUnavailable,
)
from smscredits.domain.regions import mask_number
from smscredits.observability import count

T = TypeVar("T")
Clock = Callable[[], datetime]

# Errors after which the write may or may not have landed, or that DynamoDB asks us to retry.
# A retry is safe because every operation carries a guard: if the first try landed, the guard trips.
_RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
}
_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
_NETWORK_ERRORS = (ReadTimeoutError, ConnectTimeoutError, EndpointConnectionError, ConnectionClosedError)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _AlreadyRefreshed(Exception):
    """The balance already belongs to this period or a later one: a refresh has nothing to do."""

    def __init__(self, account: Account) -> None:
        super().__init__("already refreshed")
        self.account = account


@dataclass(frozen=True, slots=True)
class _Tripped:
    """A refused write whose guard already existed: the item it found decides the answer."""

    account: Account
    item: dict[str, Any]


@dataclass
class Write:
    """What a builder asks the store to write besides the balance and its entries."""

    plan: L.Plan
    op_id: str
    reference: Mapping[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)  # guard/hold items, conditions included
    account_changes: dict[str, Any] = field(default_factory=dict)  # Account fields set with the movement
    result: Any = None


@dataclass(frozen=True, slots=True)
class HoldDraft:
    hold_id: str
    segments: int
    region: str
    request_hash: str
    message: Mapping[str, Any]
    attempt_id: str = field(default_factory=lambda: uuid.uuid4().hex)


# ---- item <-> model -------------------------------------------------------------------------------


def account_item(account: Account) -> dict[str, Any]:
    return {
        "pk": account_pk(account.account_id),
        "sk": ACCOUNT_SK,
        "type": "account",
        "account_id": account.account_id,
        **_account_attrs(account.__class__, _account_fields(account)),
        "refresh_shard": shard_of(account.account_id, REFRESH_SHARDS, "RS"),
    }


def _account_fields(account: Account) -> dict[str, Any]:
    return {name: getattr(account, name) for name in Account.__slots__ if name != "account_id"}


def _account_attrs(_: type, fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, datetime):
            out[name] = iso(value)
        elif isinstance(value, date):
            out[name] = value.isoformat()
        elif isinstance(value, Mapping):
            out[name] = dict(value)
        else:
            out[name] = value
    return out


def account_from_item(raw: Mapping[str, Any]) -> Account:
    return Account(
        account_id=raw["account_id"],
        plan=raw["plan"],
        credit_model=raw["credit_model"],
        home_region=raw["home_region"],
        billing_anchor=date.fromisoformat(raw["billing_anchor"]),
        created_at=parse_time(raw["created_at"]),
        period_start=date.fromisoformat(raw["period_start"]),
        next_refresh_at=parse_time(raw["next_refresh_at"]),
        allowance=int(raw["allowance"]),
        pools={k: int(v) for k, v in raw.get("pools", {}).items()},
        held=int(raw.get("held", 0)),
        version=int(raw["version"]),
        smart_encoding=bool(raw.get("smart_encoding", False)),
        pending_plan=raw.get("pending_plan"),
        auto_recharge=raw.get("auto_recharge", {}),
        migrated_at=parse_time(raw["migrated_at"]) if raw.get("migrated_at") else None,
    )


def hold_from_item(raw: Mapping[str, Any]) -> Hold:
    return Hold(
        account_id=raw["account_id"],
        hold_id=raw["hold_id"],
        status=raw["status"],
        credits=int(raw["credits"]),
        funding=tuple(L.Funding(f["pool"], int(f["credits"])) for f in raw["funding"]),
        period_start=date.fromisoformat(raw["period_start"]),
        created_at=parse_time(raw["created_at"]),
        request_hash=raw["request_hash"],
        message=raw.get("message", {}),
        provider=raw.get("provider", {}),
        ended_at=parse_time(raw["ended_at"]) if raw.get("ended_at") else None,
    )


def provider_condition(sid: str | None, settled: Collection[str] = ()) -> tuple[str, dict[str, Any]]:
    """The condition a status callback's write puts on the hold's provider map: the SID recorded there, if
    any, is `sid` (a callback for another message moves nothing), and the status recorded there, if any, is
    none of `settled` (statuses only move forward; a final one is final). Empty when there is nothing to check."""
    parts: list[str] = []
    values: dict[str, Any] = {}
    if sid:
        parts.append("(attribute_not_exists(provider.sid) OR provider.sid = :sid)")
        values[":sid"] = to_value(sid)
    if settled:
        keys = [f":settled{index}" for index in range(len(settled))]
        parts.append(
            "(attribute_not_exists(provider.provider_status) "
            f"OR NOT provider.provider_status IN ({', '.join(keys)}))"
        )
        values.update({key: to_value(status) for key, status in zip(keys, sorted(settled), strict=True)})
    return " AND ".join(parts), values


# ---- the store --------------------------------------------------------------------------------------


class LedgerStore:
    """Atomic, idempotent credit movements for one table."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        clock: Clock = utc_now,
        legacy_rates: Mapping[str, int] = DEFAULT_LEGACY_CREDITS_PER_MESSAGE,
        sweep_grace_seconds: int = 900,
        max_attempts: int = 8,
        cache_size: int = 10_000,
    ) -> None:
        self.table = table_name
        self._client = client
        self.clock = clock
        self.legacy_rates = legacy_rates
        self.sweep_grace_seconds = sweep_grace_seconds
        self.max_attempts = max_attempts
        self._cache: OrderedDict[str, Account] = OrderedDict()
        self._cache_size = cache_size

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    # -- reads ----------------------------------------------------------------------------------------

    def get_account(self, account_id: str) -> Account:
        response = self.client.get_item(
            TableName=self.table,
            Key={"pk": to_value(account_pk(account_id)), "sk": to_value(ACCOUNT_SK)},
            ConsistentRead=True,
        )
        if "Item" not in response:
            raise NotFound(f"Account {account_id} does not exist.", {"account_id": account_id})
        account = account_from_item(from_item(response["Item"]))
        self._remember(account)
        return account

    def get_hold(self, account_id: str, hold_id: str) -> Hold:
        response = self.client.get_item(
            TableName=self.table,
            Key={"pk": to_value(account_pk(account_id)), "sk": to_value(hold_sk(hold_id))},
            ConsistentRead=True,
        )
        if "Item" not in response:
            raise NotFound(f"Message {hold_id} does not exist.", {"message_id": hold_id})
        return hold_from_item(from_item(response["Item"]))

    def _item(self, account_id: str, sk: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table,
            Key={"pk": to_value(account_pk(account_id)), "sk": to_value(sk)},
            ConsistentRead=True,
        )
        return from_item(response["Item"]) if "Item" in response else None

    def record_provider_status(self, hold: Hold, status: str, *, sid: str, settled: Collection[str]) -> bool:
        """Note a later delivery status on a charged message, unless the message's recorded SID is another or
        its recorded status is one of `settled`. Moves no credits, so it is a plain conditional update.
        Returns False when the condition refused it (the hold changed since it was read)."""
        condition, values = provider_condition(sid, settled)
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": to_value(account_pk(hold.account_id)), "sk": to_value(hold_sk(hold.hold_id))},
                UpdateExpression="SET provider.provider_status = :status, provider.sid = :sid",
                ConditionExpression=f"#status = :posted AND attribute_exists(provider) AND {condition}",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":status": to_value(status),
                    ":posted": to_value("posted"),
                    **values,
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def write_item(self, operation: str, **request: Any) -> None:
        """One single-item write (`put_item` or `update_item`) that moves no credits, retried as movements
        are: on throttling, a conflict with a transaction, or a lost answer. Only for writes whose condition
        makes a repeat harmless (a repeat of a landed write then fails its condition, which the caller
        handles as it handles a second request). ClientErrors other than those are the caller's."""
        for attempt in range(self.max_attempts):
            try:
                getattr(self.client, operation)(**request)
                return
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code not in _RETRYABLE_CODES and code != "TransactionConflictException":
                    raise
            except _NETWORK_ERRORS:
                pass
            self._backoff(attempt)
        raise UpstreamUnavailable("The table is too busy right now; try again.", {"operation": operation})

    def cached_account(self, account_id: str) -> Account | None:
        return self._cache.get(account_id)

    def _remember(self, account: Account) -> None:
        known = self._cache.get(account.account_id)
        if known is not None and known.version > account.version:
            return  # never step the view back (a slower reader raced a newer write)
        self._cache[account.account_id] = account
        self._cache.move_to_end(account.account_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # -- the one write path ---------------------------------------------------------------------------

    def _commit(
        self,
        account_id: str,
        build: Callable[[Account], Write],
        on_guard: Callable[[dict[str, Any]], T],
    ) -> tuple[Account, Write | T]:
        """Apply `build`'s plan atomically; returns (account after, write) or (account, on_guard(item))."""
        state = self._cache.get(account_id)
        fresh = state is None
        if state is None:
            state = self.get_account(account_id)
        for attempt in range(self.max_attempts):
            try:
                write = build(state)
            except DomainError:
                if fresh:
                    raise
                state, fresh = self.get_account(account_id), True  # refuse only on a balance read now
                continue
            try:
                self.client.transact_write_items(TransactItems=self._transaction(state, write))
            except ClientError as error:
                outcome = self._after_refusal(account_id, state, fresh, write, error, attempt)
                if isinstance(outcome, _Tripped):
                    return outcome.account, on_guard(outcome.item)
                state, fresh = outcome
                continue
            except _NETWORK_ERRORS:
                # The write may have landed. Re-sending the same plan pinned to the same balance is safe and
                # exact: if it landed, the version and the guard both fail and the guard answers; re-planning
                # from a fresh read instead could refuse (402, below zero) because of our own write.
                self._backoff(attempt)
                continue
            after = replace(
                state,
                pools=dict(write.plan.pools),
                held=write.plan.held,
                version=state.version + 1,
                **write.account_changes,
            )
            self._remember(after)
            return after, write
        raise UpstreamUnavailable(
            "The balance is too busy right now; nothing was changed. Try again.", {"account_id": account_id}
        )

    def _after_refusal(
        self, account_id: str, state: Account, fresh: bool, write: Write, error: ClientError, attempt: int
    ) -> _Tripped | tuple[Account, bool]:
        """Decide what a refused transaction means: a tripped guard (the answer), or the balance to retry from."""
        code = error.response.get("Error", {}).get("Code", "")
        if code != "TransactionCanceledException":
            if code not in _RETRYABLE_CODES:
                raise error
            # Some of these (InternalServerError) leave the outcome unknown: retry the same plan from the
            # same balance, so that if it landed its guard trips (see the network case in _commit).
            self._backoff(attempt)
            return state, fresh
        reasons = error.response.get("CancellationReasons", [])
        tripped = self._tripped_guard(reasons, len(write.items))
        current = self._current_balance(reasons)
        if tripped is not None:
            return _Tripped(current or state, tripped)
        if current is not None:
            # A first miss is usually a stale cache: retry at once from the balance we were handed.
            # Missing again means writers are racing for this balance: back off so they spread out.
            if attempt:
                self._backoff(attempt)
            return current, True
        if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
            raise NotFound(f"Account {account_id} does not exist.", {"account_id": account_id}) from error
        self._backoff(attempt)  # conflict, throttling or a ledger slot taken: re-read and retry
        return self.get_account(account_id), True

    def _current_balance(self, reasons: list[dict[str, Any]]) -> Account | None:
        """The balance as it is now, when its version condition failed and returned it (ALL_OLD)."""
        reason = reasons[0] if reasons else {}
        if reason.get("Code") != "ConditionalCheckFailed" or not reason.get("Item"):
            return None
        current = account_from_item(from_item(reason["Item"]))
        self._remember(current)
        return current

    @staticmethod
    def _tripped_guard(reasons: list[dict[str, Any]], extra: int) -> dict[str, Any] | None:
        for index in range(1, extra + 1):
            reason = reasons[index] if index < len(reasons) else {}
            if reason.get("Code") == "ConditionalCheckFailed":
                return from_item(reason.get("Item", {}))
        return None

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))

    def _transaction(self, state: Account, write: Write) -> list[dict[str, Any]]:
        now = iso(self.clock())
        version = state.version + 1
        sets = {
            "pools": dict(write.plan.pools),
            "held": write.plan.held,
            "version": version,
            "updated_at": now,
        }
        sets.update(_account_attrs(Account, write.account_changes))
        names = {f"#a{i}": name for i, name in enumerate(sets)}
        values = {f":a{i}": to_value(value) for i, value in enumerate(sets.values())}
        values[":v"] = to_value(state.version)
        names["#version"] = "version"
        balance = {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": to_value(account_pk(state.account_id)), "sk": to_value(ACCOUNT_SK)},
                "UpdateExpression": "SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(sets))),
                "ConditionExpression": "#version = :v",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        entries = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(
                        {
                            "pk": account_pk(state.account_id),
                            "sk": ledger_sk(version, index),
                            "type": "ledger",
                            "entry_id": f"{state.account_id}:{version}:{index}",
                            "account_id": state.account_id,
                            "kind": entry.kind,
                            "pool": entry.pool,
                            "amount": entry.amount,
                            "balance_after": entry.balance_after,
                            "created_at": now,
                            "op_id": write.op_id,
                            "reference": dict(write.reference),
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            }
            for index, entry in enumerate(write.plan.entries)
        ]
        return [balance, *write.items, *entries]

    def _guard_put(
        self,
        account_id: str,
        op_id: str,
        outcome: Mapping[str, Any],
        attempt_id: str | None = None,
        request_hash: str | None = None,
    ) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table,
                "Item": to_item(
                    {
                        "pk": account_pk(account_id),
                        "sk": guard_sk(op_id),
                        "type": "operation",
                        "op_id": op_id,
                        "attempt_id": attempt_id,  # which call wrote it: a retry of that call is not a duplicate
                        "request_hash": request_hash,  # what was asked: the same id with another request is refused
                        "created_at": iso(self.clock()),
                        "outcome": dict(outcome),
                    }
                ),
                "ConditionExpression": "attribute_not_exists(sk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    # -- accounts -------------------------------------------------------------------------------------

    def create_account(self, account: Account, op_id: str, reference: Mapping[str, Any]) -> Account:
        """Create an account with its first allowance already granted (one transaction)."""
        pool = L.LEGACY if account.credit_model == "legacy" else L.INCLUDED
        plan = L.plan_grant({}, 0, pool, account.allowance) if account.allowance else L.Plan({}, 0, ())
        created = replace(account, pools={**dict(account.pools), **dict(plan.pools)}, version=1)
        genesis = replace(created, version=0)
        item = account_item(created)
        item["version"] = 1
        put = {
            "Put": {
                "TableName": self.table,
                "Item": to_item(item),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        write = Write(plan=plan, op_id=op_id, reference=reference)
        transaction = self._transaction(genesis, write)
        transaction[0] = put  # the account item is created, not updated
        try:
            self.client.transact_write_items(TransactItems=transaction)
        except ClientError as error:
            reasons = error.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise AccountExists(
                    f"Account {account.account_id} already exists.", {"account_id": account.account_id}
                ) from error
            raise
        self._remember(created)
        return created

    def update_settings(self, account_id: str, changes: Mapping[str, Any], op_id: str) -> Account:
        """Change account fields that move no credits (settings), still pinned to the version."""

        def build(state: Account) -> Write:
            return Write(
                plan=L.Plan(state.pools, state.held, ()),
                op_id=op_id,
                reference={},
                account_changes=dict(changes),
            )

        after, _ = self._commit(account_id, build, lambda item: item)
        return after

    # -- credit movements -----------------------------------------------------------------------------

    def grant(
        self,
        account_id: str,
        pool: str,
        credits: int,
        *,
        op_id: str,
        kind: str = "grant",
        reference: Mapping[str, Any] | None = None,
    ) -> tuple[Account, bool]:
        """Add credits to a pool once per op_id. Returns (account, applied); a duplicate returns applied=False."""
        reference = dict(reference or {})
        attempt_id = uuid.uuid4().hex

        def build(state: Account) -> Write:
            plan = L.plan_grant(state.pools, state.held, pool, credits, kind)
            outcome = {"kind": kind, "pool": pool, "credits": credits}
            return Write(
                plan, op_id, reference, items=[self._guard_put(account_id, op_id, outcome, attempt_id)]
            )

        after, result = self._commit(account_id, build, lambda item: item)
        return after, isinstance(result, Write) or result.get("attempt_id") == attempt_id

    def adjust(
        self, account_id: str, pool: str, credits: int, *, op_id: str, actor: str, reason: str
    ) -> tuple[Account, dict[str, Any]]:
        """A support correction (positive or negative), never below zero, once per op_id. The op_id replayed
        with the same pool, credits and reason answers the first outcome; with any other, idempotency_key_reused."""
        request = json.dumps({"pool": pool, "credits": credits, "reason": reason}, sort_keys=True)
        request_hash = hashlib.sha256(request.encode()).hexdigest()

        def build(state: Account) -> Write:
            plan = L.plan_adjust(state.pools, state.held, pool, credits)
            outcome = {"pool": pool, "credits": credits, "balance_after": plan.pools[pool]}
            return Write(
                plan,
                op_id,
                {"actor": actor, "reason": reason},
                items=[self._guard_put(account_id, op_id, outcome, request_hash=request_hash)],
                result=outcome,
            )

        def replayed(guard: dict[str, Any]) -> dict[str, Any]:
            if guard.get("request_hash") != request_hash:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different adjustment.",
                    {"header": "Idempotency-Key"},
                )
            return dict(guard.get("outcome", {}))

        try:
            after, result = self._commit(account_id, build, replayed)
        except InvalidRequest:
            # A replay of an adjustment that emptied the pool is refused by today's balance: answer it.
            guard = self._item(account_id, guard_sk(op_id))
            if guard is None:
                raise
            return self._cache.get(account_id) or self.get_account(account_id), replayed(guard)
        if isinstance(result, Write):
            return after, result.result
        return after, result

    def reserve(self, account_id: str, draft: HoldDraft) -> tuple[Hold, bool]:
        """Reserve a message's credits (included first, then the region's pool; all or nothing).

        Returns (hold, created). created=False means the hold already existed for this message id:
        a duplicate request (the caller compares request_hash) or a retry of our own write.
        """

        def build(state: Account) -> Write:
            credits = L.message_credits(state.credit_model, draft.segments, draft.region, self.legacy_rates)
            funding = L.funding_for(state.credit_model, state.pools, draft.region, credits)
            plan = L.plan_reserve(state.pools, state.held, funding)
            now = self.clock()
            hold = Hold(
                account_id=account_id,
                hold_id=draft.hold_id,
                status="pending",
                credits=credits,
                funding=funding,
                period_start=state.period_start,
                created_at=now,
                request_hash=draft.request_hash,
                message=dict(draft.message),
            )
            sweep_after = datetime.fromtimestamp(now.timestamp() + self.sweep_grace_seconds, UTC)
            item = {
                "pk": account_pk(account_id),
                "sk": hold_sk(draft.hold_id),
                "type": "hold",
                "account_id": account_id,
                "hold_id": draft.hold_id,
                "status": "pending",
                "credits": credits,
                "funding": [{"pool": f.pool, "credits": f.credits} for f in funding],
                "period_start": state.period_start.isoformat(),
                "created_at": iso(now),
                "request_hash": draft.request_hash,
                "attempt_id": draft.attempt_id,
                "message": dict(draft.message),
                "sweep_shard": shard_of(draft.hold_id, SWEEP_SHARDS, "SW"),
                "sweep_after": iso(sweep_after),
            }
            put = {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(item),
                    "ConditionExpression": "attribute_not_exists(sk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            reference = {"message_id": draft.hold_id}
            if draft.message.get("to"):
                reference["to"] = mask_number(str(draft.message["to"]))  # statements show it; never in full
            return Write(plan, f"hold:{draft.hold_id}", reference, items=[put], result=hold)

        def existing(item: dict[str, Any]) -> tuple[Hold, bool]:
            # Our own earlier attempt (a retry after a timeout) counts as created.
            return hold_from_item(item), item.get("attempt_id") == draft.attempt_id

        try:
            _, result = self._commit(account_id, build, existing)
        except InsufficientCredits:
            # A replay of a message whose own hold took the last credits is a duplicate, not a 402.
            item = self._item(account_id, hold_sk(draft.hold_id))
            if item is None:
                raise
            return existing(item)
        if isinstance(result, Write):
            return result.result, True
        return result

    def post(self, hold: Hold, provider: Mapping[str, Any] | None = None, *, sid: str | None = None) -> Hold:
        """Charge a pending hold. Posting a posted hold returns it unchanged; a voided one is refused.
        With `sid` (a status callback's), the write also requires that no other SID was recorded."""
        return self._end_hold(hold, "posted", provider or {}, sid)

    def void(self, hold: Hold, provider: Mapping[str, Any] | None = None, *, sid: str | None = None) -> Hold:
        """Return a pending hold to its pools. Voiding a voided hold returns it; a posted one is refused."""
        return self._end_hold(hold, "voided", provider or {}, sid)

    def _end_hold(self, hold: Hold, status: str, provider: Mapping[str, Any], sid: str | None) -> Hold:
        provider_check, provider_values = provider_condition(sid)

        def build(state: Account) -> Write:
            if status == "posted":
                plan = L.plan_post(state.pools, state.held, hold.funding)
            else:
                lapsed = hold.period_start != state.period_start
                plan = L.plan_void(state.pools, state.held, hold.funding, included_lapsed=lapsed)
            now = self.clock()
            merged = {**dict(hold.provider), **dict(provider)}
            update = {
                "Update": {
                    "TableName": self.table,
                    "Key": {
                        "pk": to_value(account_pk(hold.account_id)),
                        "sk": to_value(hold_sk(hold.hold_id)),
                    },
                    "UpdateExpression": "SET #status = :status, ended_at = :now, provider = :provider "
                    "REMOVE sweep_shard, sweep_after",
                    "ConditionExpression": " AND ".join(filter(None, ["#status = :pending", provider_check])),
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":status": to_value(status),
                        ":now": to_value(iso(now)),
                        ":provider": to_value(merged),
                        ":pending": to_value("pending"),
                        **provider_values,
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            ended = replace(hold, status=status, ended_at=now, provider=merged)
            reference = {"message_id": hold.hold_id, **{k: v for k, v in merged.items() if k == "sid"}}
            return Write(plan, f"{status}:{hold.hold_id}", reference, items=[update], result=ended)

        def already_ended(item: dict[str, Any]) -> Hold:
            current = hold_from_item(item) if item else None
            if current is None:
                raise NotFound(f"Message {hold.hold_id} does not exist.", {"message_id": hold.hold_id})
            if current.status == status:
                return current
            raise HoldEnded(
                f"Message {hold.hold_id} was already {current.status}.",
                {"message_id": hold.hold_id, "status": current.status},
            )

        _, result = self._commit(hold.account_id, build, already_ended)
        if not isinstance(result, Write):
            return result  # already ended this way: a repeat, nothing moved
        count("CreditsPosted" if status == "posted" else "CreditsVoided", hold.credits)
        ended: Hold = result.result
        return ended

    def reset_allowance(
        self,
        account_id: str,
        *,
        period_start: date,
        next_refresh_at: datetime,
        allowances: Mapping[str, int] = PLANS,
    ) -> tuple[Account, bool]:
        """The monthly refresh for one period: lapse what is left, grant the allowance, move the next
        refresh time on. Once per (account, period): a second call for the same period changes nothing.

        The plan (a pending downgrade, else the current plan) is read from the balance the write is pinned
        to, so a plan change that lands between the caller's read and this write is never overwritten."""
        op_id = f"refresh:{period_start.isoformat()}"
        attempt_id = uuid.uuid4().hex

        def build(state: Account) -> Write:
            if state.period_start >= period_start:
                raise _AlreadyRefreshed(state)
            plan_name = state.pending_plan or state.plan
            allowance = allowances[plan_name]
            plan = L.plan_reset(state.pools, state.held, state.credit_model, allowance)
            outcome = {"period_start": period_start.isoformat(), "allowance": allowance}
            return Write(
                plan,
                op_id,
                {"period": period_start.isoformat()},
                items=[self._guard_put(account_id, op_id, outcome, attempt_id)],
                account_changes={
                    "period_start": period_start,
                    "next_refresh_at": next_refresh_at,
                    "allowance": allowance,
                    "plan": plan_name,
                    "pending_plan": None,
                },
            )

        try:
            after, result = self._commit(account_id, build, lambda item: item)
        except _AlreadyRefreshed as current:
            return current.account, False
        return after, isinstance(result, Write) or result.get("attempt_id") == attempt_id

    def apply(
        self,
        account_id: str,
        build: Callable[[Account], Write],
        on_guard: Callable[[dict[str, Any]], T],
    ) -> tuple[Account, Write | T]:
        """The general movement for services with their own planner (migration, clawback, plan change)."""
        return self._commit(account_id, build, on_guard)

    def guard_item(
        self, account_id: str, op_id: str, outcome: Mapping[str, Any], attempt_id: str | None = None
    ) -> dict[str, Any]:
        """The guard Put of a service's own movement; pass `attempt_id` to tell a retry of a landed write
        (the guard carries it) from a real duplicate."""
        return self._guard_put(account_id, op_id, outcome, attempt_id)
