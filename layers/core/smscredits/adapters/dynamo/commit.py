"""The one way the ledger writes to DynamoDB: a Change as one transaction, pinned to the balance version it was
computed from, retried until it lands or a record's precondition refuses it.

A warm process keeps the last balance it wrote per account, so a movement costs one request and no read;
when that view is stale the failed version condition returns the current balance item (ALL_OLD) and the
Change is computed once more from it. After a network error or an error that leaves the outcome unknown,
the same Change is sent again pinned to the same balance: if the first one landed, its version and its guard
both fail now and the guard answers (re-computing from a fresh read instead could refuse, say with 402,
because of our own write). Nothing here reads a balance and writes it back without the version condition.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from smscredits.adapters.dynamo import codec as C
from smscredits.adapters.dynamo import writes
from smscredits.adapters.dynamo.client import dynamodb_client
from smscredits.adapters.dynamo.values import from_item
from smscredits.domain.account import Account
from smscredits.domain.changes import Change, Committed, Record, Refused
from smscredits.domain.errors import AccountExists, Busy, DomainError, NotFound
from smscredits.domain.periods import iso

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Clock

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
# Seconds: full jitter's base and cap (see CommitEngine._backoff): eight attempts wait at most 4.55 s in all.
BACKOFF_BASE, BACKOFF_CAP = 0.05, 1.0
# Cancellation reasons that a second try may not meet (AWS, TransactWriteItems: "CancellationReasons"); any
# other (ValidationError, ItemCollectionSizeLimitExceeded) fails the same way every time: a bug, raised at once.
_PASSING_REASONS = frozenset(
    {
        "None",
        "ConditionalCheckFailed",
        "TransactionConflict",
        "ProvisionedThroughputExceeded",
        "ThrottlingError",
    }
)
_NETWORK_ERRORS = (ReadTimeoutError, ConnectTimeoutError, EndpointConnectionError, ConnectionClosedError)


class CommitEngine:
    """Reads and atomic writes of one table, with the warm view of the balances this process wrote."""

    def __init__(
        self,
        table: str,
        *,
        client: Any,
        clock: Clock,
        max_attempts: int,
        cache_size: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table
        self._client = client
        self.clock = clock
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._cache: OrderedDict[str, Account] = OrderedDict()
        self._cache_size = cache_size

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    # -- reads ----------------------------------------------------------------------------------------

    def read(self, key: C.Key) -> dict[str, Any] | None:
        """One item by key (a consistent read), as plain values; None when absent."""
        response = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        return from_item(response["Item"]) if "Item" in response else None

    def read_account(self, account_id: str) -> Account:
        raw = self.read(C.account_key(account_id))
        if raw is None:
            raise NotFound(f"Account {account_id} does not exist.", {"account_id": account_id})
        account = C.account_from_item(raw)
        self._remember(account)
        return account

    def known(self, account_id: str) -> Account | None:
        """The balance as this process last wrote or read it (no request)."""
        return self._cache.get(account_id)

    def _remember(self, account: Account) -> None:
        known = self._cache.get(account.account_id)
        if known is not None and known.version > account.version:
            return  # never step the view back (a slower reader raced a newer write)
        self._cache[account.account_id] = account
        self._cache.move_to_end(account.account_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # -- writes ---------------------------------------------------------------------------------------

    def create(self, account: Account, change: Change) -> None:
        """Write a new account's balance item and first entries; AccountExists when the account exists."""
        try:
            self.client.transact_write_items(
                TransactItems=writes.creation(self.table, account, change, iso(self.clock()))
            )
        except ClientError as error:
            reasons = error.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise AccountExists(
                    f"Account {account.account_id} already exists.", {"account_id": account.account_id}
                ) from error
            raise
        self._remember(account)

    def commit(self, account_id: str, build: Callable[[Account], Change]) -> Committed | Refused:
        """Apply `build`'s Change atomically: Committed (the account after it), or Refused when one of its
        records' preconditions failed (that record as it is now). A refusal `build` raises (a DomainError)
        is trusted only when computed from a balance read now, not from the warm view."""
        state = self._cache.get(account_id)
        fresh = state is None
        if state is None:
            state = self.read_account(account_id)
        for attempt in range(self.max_attempts):
            try:
                change = build(state)
            except DomainError:
                if fresh:
                    raise
                state, fresh = self.read_account(account_id), True
                continue
            try:
                self.client.transact_write_items(
                    TransactItems=writes.transaction(self.table, state, change, iso(self.clock()))
                )
            except ClientError as error:
                outcome = self._after_refusal(account_id, state, fresh, change, error, attempt)
                if isinstance(outcome, Refused):
                    return outcome
                state, fresh = outcome
                continue
            except _NETWORK_ERRORS:
                self._backoff(attempt)  # the write may have landed: send the same Change again (see above)
                continue
            after = state._replace(
                pools=dict(change.movement.pools),
                held=change.movement.held,
                version=state.version + 1,
                **change.account,
            )
            self._remember(after)
            return Committed(after, change)
        raise Busy(
            "The account's balance is too busy right now; nothing was changed. Try again.",
            {"account_id": account_id},
        )

    def _after_refusal(
        self, account_id: str, state: Account, fresh: bool, change: Change, error: ClientError, attempt: int
    ) -> Refused | tuple[Account, bool]:
        """What a refused transaction means: a record's precondition failed (Refused), or the balance to retry from."""
        code = error.response.get("Error", {}).get("Code", "")
        if code != "TransactionCanceledException":
            if code not in _RETRYABLE_CODES:
                raise error
            # Some of these (InternalServerError) leave the outcome unknown: retry the same Change from the
            # same balance, so that if it landed its guard trips (see the module's docstring).
            self._backoff(attempt)
            return state, fresh
        reasons = error.response.get("CancellationReasons", [])
        if any(reason.get("Code", "None") not in _PASSING_REASONS for reason in reasons):
            raise error  # deterministic: retrying would only hide the bug behind a "busy"
        current = self._current_balance(reasons)
        for index, record in enumerate(change.records, start=1):
            reason = reasons[index] if index < len(reasons) else {}
            if reason.get("Code") == "ConditionalCheckFailed":
                return Refused(current or state, record, C.decode(from_item(reason.get("Item", {}))))
        if current is not None:
            # A first miss is usually a stale view: retry at once from the balance we were handed.
            # Missing again means writers are racing for this balance: back off so they spread out.
            if attempt:
                self._backoff(attempt)
            return current, True
        if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
            raise NotFound(f"Account {account_id} does not exist.", {"account_id": account_id}) from error
        self._backoff(attempt)  # conflict, throttling or a ledger slot taken: re-read and retry
        return self.read_account(account_id), True

    def _current_balance(self, reasons: list[dict[str, Any]]) -> Account | None:
        """The balance as it is now, when its version condition failed and returned it (ALL_OLD)."""
        reason = reasons[0] if reasons else {}
        if reason.get("Code") != "ConditionalCheckFailed" or not reason.get("Item"):
            return None
        current = C.account_from_item(from_item(reason["Item"]))
        self._remember(current)
        return current

    def write(self, record: Record) -> Refused | None:
        """One record written on its own (no balance), retried as movements are: on throttling, a conflict
        with a transaction, or a lost answer. Only for records whose precondition makes a repeat harmless (a
        repeat of a landed write fails its condition). Refused (with the item as it is) when the condition
        failed."""
        operation, request = writes.single(self.table, record, iso(self.clock()))
        for attempt in range(self.max_attempts):
            try:
                getattr(self.client, operation)(**request)
                return None
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    return Refused(None, record, C.decode(from_item(error.response.get("Item", {}))))
                if code not in _RETRYABLE_CODES and code != "TransactionConflictException":
                    raise
            except _NETWORK_ERRORS:
                pass
            self._backoff(attempt)
        raise Busy(
            "The table is too busy right now; nothing was changed. Try again.", {"operation": operation}
        )

    def _backoff(self, attempt: int) -> None:
        """Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter") from
        botocore's own DynamoDB retry base. A transaction holds the balance for about 25 ms, so a shorter
        base (5 ms, capped at 0.2 s, before) sent every cancelled writer back into the next one's window:
        docs/design/concurrency.md measures both."""
        self._sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
