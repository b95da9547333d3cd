"""The Ledger port's operations, written once for both ledgers (DynamoDB and in memory); those that come from
payments are adapters/payment_operations.py's, which this class extends.

Each operation computes its Change with a pure function of domain/movements.py from the account state the
write will be pinned to, hands it to the ledger's commit, and decides what a refused precondition means: a
duplicate, a message that already ended, or its own earlier write found after a lost answer (the attempt id
it carries). A ledger provides the reads, `_commit` (a Change atomically, pinned to the balance version),
`_create` and `_write` (one record without a balance)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from smscredits.adapters.batch_operations import BatchOperations
from smscredits.adapters.payment_operations import PaymentOperations, new_attempt, ours
from smscredits.domain import ledger as L
from smscredits.domain import movements as M
from smscredits.domain import subscription_movements as SM
from smscredits.domain.account import Account, Hold
from smscredits.domain.account_settings import AccountPatch
from smscredits.domain.catalog import PLANS
from smscredits.domain.changes import (
    Change,
    DeliveryStatus,
    Dispatch,
    Guard,
    Refused,
    Unchanged,
)
from smscredits.domain.errors import (
    HoldEnded,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
)
from smscredits.domain.events import SEGMENTS_MISMATCH
from smscredits.domain.idempotency import request_hash as hashed
from smscredits.observability import count, logger

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.domain.subscriptions import Subscription
    from smscredits.services.ports import Clock


class LedgerOperations(PaymentOperations, BatchOperations):
    def __init__(
        self,
        *,
        clock: Clock,
        legacy_rates: Mapping[str, int],
        sweep_grace_seconds: int,
        message_retention_seconds: int,
    ) -> None:
        self.clock = clock
        self.legacy_rates = legacy_rates
        self.sweep_grace_seconds = sweep_grace_seconds
        self.message_retention = timedelta(seconds=message_retention_seconds)

    # -- what each ledger provides ----------------------------------------------------------------------

    @abstractmethod
    def known_account(self, account_id: str) -> Account: ...

    @abstractmethod
    def find_hold(self, account_id: str, message_id: str) -> Hold | None: ...

    @abstractmethod
    def find_operation(self, account_id: str, op_id: str) -> Guard | None: ...

    @abstractmethod
    def _create(self, account: Account, change: Change) -> None: ...

    def get_hold(self, account_id: str, message_id: str) -> Hold:
        hold = self.find_hold(account_id, message_id)
        if hold is None:
            raise NotFound(f"Message {message_id} does not exist.", {"message_id": message_id})
        return hold

    # -- accounts ---------------------------------------------------------------------------------------

    def create_account(self, account: Account, *, reference: Mapping[str, Any]) -> Account:
        """Create an account with its first allowance granted (one write); AccountExists if it exists."""
        created, change = M.create_account(account, reference)
        self._create(created, change)
        return created

    def adjust(
        self, account_id: str, pool: str, credits: int, *, op_id: str, actor: str, reason: str
    ) -> tuple[Account, Mapping[str, Any]]:
        """A support correction, once per op_id. The op_id replayed with the same pool, credits and reason
        answers the first outcome; with any other, idempotency_key_reused."""
        request_hash = hashed({"pool": pool, "credits": credits, "reason": reason})

        def build(state: Account) -> Change:
            return M.adjust(
                state, pool, credits, op_id=op_id, actor=actor, reason=reason, request_hash=request_hash
            )

        try:
            outcome = self._commit(account_id, build)
        except InvalidRequest:
            # A replay of an adjustment that emptied the pool is refused by today's balance: answer it.
            guard = self.find_operation(account_id, op_id)
            if guard is None:
                raise
            return self.known_account(account_id), replayed(guard, request_hash, "adjustment")
        if isinstance(outcome, Refused):
            assert isinstance(outcome.found, Guard) and outcome.account is not None
            return outcome.account, replayed(outcome.found, request_hash, "adjustment")
        return outcome.account, outcome.change.result

    def change_plan(
        self, account_id: str, plan: str, *, actor: str, op_id: str
    ) -> tuple[Account, Mapping[str, Any]]:
        """An upgrade grants the difference now, a downgrade waits for the refresh, once per op_id (a repeat
        answers the first outcome; the op_id with another plan: idempotency_key_reused). Answers (account,
        outcome)."""
        request_hash = hashed({"plan": plan})

        def build(state: Account) -> Change:
            return M.change_plan(
                state, plan, allowances=PLANS, actor=actor, op_id=op_id, request_hash=request_hash
            )

        outcome = self._commit(account_id, build)
        if isinstance(outcome, Refused):
            assert isinstance(outcome.found, Guard) and outcome.account is not None
            return outcome.account, replayed(outcome.found, request_hash, "plan change")
        return outcome.account, outcome.change.result

    def update_account(
        self, account_id: str, patch: AccountPatch, *, actor: str, op_id: str
    ) -> tuple[Account, Mapping[str, Any]]:
        """Support's change of an account's settings, once per op_id; answers (account, the account's view as
        the change left it), a repeat the first view."""
        request_hash = hashed({"patch": patch.requested()})

        def build(state: Account) -> Change:
            return M.update_account(
                state, patch, today=self.clock().date(), actor=actor, op_id=op_id, request_hash=request_hash
            )

        outcome = self._commit(account_id, build)
        if isinstance(outcome, Refused):
            assert isinstance(outcome.found, Guard) and outcome.account is not None
            return outcome.account, replayed(outcome.found, request_hash, "change")
        return outcome.account, outcome.change.result

    def sync_subscription(self, account_id: str, subscription: Subscription) -> Mapping[str, Any]:
        """Keep a Stripe subscription's state (plan, anchor, cancellation) unless a newer one is kept."""
        today = self.clock().date()
        try:
            outcome = self._commit(
                account_id,
                lambda state: SM.sync_subscription(state, subscription, allowances=PLANS, today=today),
            )
        except Unchanged as stale:
            return dict(stale.answer)
        assert not isinstance(outcome, Refused)  # the Change has no record whose precondition could fail
        return dict(outcome.change.result)

    def refresh_allowance(
        self, account_id: str, *, period_start: date, next_refresh_at: datetime, attempt_id: str | None = None
    ) -> tuple[Account, bool]:
        """The monthly refresh for one period, once per (account, period): (account, refreshed by this call)."""
        attempt = new_attempt(attempt_id)

        def build(state: Account) -> Change:
            return M.refresh(
                state,
                period_start=period_start,
                next_refresh_at=next_refresh_at,
                allowances=PLANS,
                attempt_id=attempt,
            )

        try:
            outcome = self._commit(account_id, build)
        except Unchanged as current:
            return current.account, False
        if isinstance(outcome, Refused):
            assert outcome.account is not None
            return outcome.account, ours(outcome.found, attempt)
        return outcome.account, True

    def request_migration(self, account_id: str, *, requested_by: str) -> tuple[Account, bool]:
        """The owner's request that support migrate a legacy account, recorded once with its event in one write
        pinned to the balance version: (the account, whether this call recorded it). NotLegacy for a segment
        account."""
        now = self.clock()
        try:
            outcome = self._commit(
                account_id, lambda state: M.request_migration(state, now=now, requested_by=requested_by)
            )
        except Unchanged as already:
            return already.account, False
        assert not isinstance(outcome, Refused)  # the Change has no record whose precondition could fail
        return outcome.account, True

    def migrate(
        self,
        account_id: str,
        *,
        ratio: tuple[int, int],
        actor: str,
        op_id: str,
        attempt_id: str | None = None,
    ) -> M.Migration:
        """A legacy account's pool converted into purchased credits of its home region, once. The op_id (the
        caller's Idempotency-Key) repeated answers what it answered first; another op_id after the migration
        answers already_migrated."""
        attempt = new_attempt(attempt_id)
        request_hash = hashed({"ratio": list(ratio)})
        pinned: list[Account] = []

        def build(state: Account) -> Change:
            pinned[:] = [state]
            return M.migrate(
                state,
                ratio=ratio,
                actor=actor,
                now=self.clock(),
                attempt_id=attempt,
                op_id=op_id,
                request_hash=request_hash,
            )

        try:
            outcome = self._commit(account_id, build)
        except Unchanged as done:
            guard = self.find_operation(account_id, op_id)
            if guard is not None:  # this key migrated it: its answer
                answer = replayed(guard, request_hash, "migration")
                return M.Migration("migrated", done.account, done.account, 0, answer)
            return M.Migration("already_migrated", done.account, done.account, 0)
        if isinstance(outcome, Refused):
            current = self.get_account(account_id)
            found = outcome.found
            if isinstance(found, Guard) and found.op_id == op_id:
                answer = replayed(found, request_hash, "migration")
                if ours(found, attempt):  # this call's own write, whose reply was lost
                    return M.Migration("migrated", pinned[0], current, int(answer["converted"]))
                return M.Migration("migrated", current, current, 0, answer)
            return M.Migration("already_migrated", current, current, 0)  # migrated under another key
        before, converted = outcome.change.result
        return M.Migration("migrated", before, outcome.account, converted)

    # -- messages ---------------------------------------------------------------------------------------

    def hold(
        self, account_id: str, request: M.HoldRequest, *, attempt_id: str | None = None
    ) -> tuple[Hold, bool]:
        """Hold a message's credits. Returns (hold, created); created=False means the hold already existed for
        this message id: a duplicate request (the caller compares request_hash). A message whose last try
        Twilio refused as busy (voided, retryable) is held again as its next try, once per try."""
        attempt = new_attempt(attempt_id)
        previous: Hold | None = None

        def build(state: Account) -> Change:
            return M.hold_message(
                state,
                request,
                now=self.clock(),
                attempt_id=attempt,
                legacy_rates=self.legacy_rates,
                sweep_grace_seconds=self.sweep_grace_seconds,
                previous=previous,
            )

        while True:
            try:
                outcome = self._commit(account_id, build)
            except InsufficientCredits:
                # A replay of a message whose own hold took the last credits is a duplicate, not a 402.
                held = self.find_hold(account_id, request.message_id)
                if held is None or _retryable(held, request):
                    raise
                return held, held.attempt_id == attempt
            if not isinstance(outcome, Refused):
                return outcome.change.result, True
            found = outcome.found
            assert isinstance(found, Hold)
            if found.attempt_id == attempt or not _retryable(found, request):
                return found, found.attempt_id == attempt  # our own earlier attempt counts as created
            previous = found  # the key is reusable: hold again as the next try (a racing replay may win it)

    def dispatch(self, hold: Hold, attempt_id: str) -> Hold:
        """Mark a pending hold as being handed to Twilio by `attempt_id`, once: the hold as it is after (its
        `dispatching` is another attempt's, or it is no longer pending, when this one must not send)."""
        refused = self._write(Dispatch(hold.account_id, hold.message_id, attempt_id))
        if refused is None:
            return hold._replace(dispatching=attempt_id)
        if not isinstance(refused.found, Hold):
            raise NotFound(f"Message {hold.message_id} does not exist.", {"message_id": hold.message_id})
        return refused.found

    def post(self, hold: Hold, provider: Mapping[str, Any] | None = None, *, sid: str | None = None) -> Hold:
        """Charge a pending hold. Posting a posted hold returns it unchanged; a voided one is refused (HoldEnded).
        With `sid` (a status callback's), the write also requires that no other SID was recorded."""
        return self._end(hold, "posted", provider or {}, sid)

    def void(self, hold: Hold, provider: Mapping[str, Any] | None = None, *, sid: str | None = None) -> Hold:
        """Return a pending hold to its pools. Voiding a voided hold returns it; a posted one is refused."""
        return self._end(hold, "voided", provider or {}, sid)

    def _end(self, hold: Hold, status: str, provider: Mapping[str, Any], sid: str | None) -> Hold:
        def build(state: Account) -> Change:
            return M.end_hold(
                state, hold, status, provider, sid=sid, now=self.clock(), retention=self.message_retention
            )

        outcome = self._commit(hold.account_id, build)
        if isinstance(outcome, Refused):
            current = outcome.found
            if not isinstance(current, Hold):
                raise NotFound(f"Message {hold.message_id} does not exist.", {"message_id": hold.message_id})
            if current.status == status:
                return current  # already ended this way: a repeat, nothing moved
            raise HoldEnded(
                f"Message {hold.message_id} was already {current.status}.",
                {"message_id": hold.message_id, "status": current.status},
            )
        count("CreditsPosted" if status == "posted" else "CreditsVoided", hold.credits)
        if any(event.detail_type == SEGMENTS_MISMATCH for event in outcome.change.events):
            count("SegmentsMismatch")
            logger.warning("twilio counted other segments", extra={"message_id": hold.message_id})
        ended: Hold = outcome.change.result
        return ended

    def refund(self, hold: Hold, provider: Mapping[str, Any]) -> tuple[Hold, bool]:
        """Return a posted message's credits (Twilio reported it failed), once: (hold, refunded by this call)."""
        ratio: tuple[int, int] | None = None

        def build(state: Account) -> Change:
            return M.refund(state, hold, provider, migration_ratio=ratio)

        try:
            outcome = self._commit(hold.account_id, build)
        except M.RetryWithMigrationRatio:  # a legacy message refunded after its account was migrated
            ratio = self._migration_ratio(hold.account_id)
            outcome = self._commit(hold.account_id, build)
        if isinstance(outcome, Refused):
            current = outcome.found
            if not isinstance(current, Hold):
                raise NotFound(f"Message {hold.message_id} does not exist.", {"message_id": hold.message_id})
            if current.status == "refunded":
                return current, False
            raise HoldEnded(f"Message {hold.message_id} is {current.status}.", {"status": current.status})
        return outcome.change.result, True

    def _migration_ratio(self, account_id: str) -> tuple[int, int]:
        """The ratio the account's migration used, as its guard recorded it (configuration may change since)."""
        guard = self.find_operation(account_id, M.MIGRATION_OP)
        if guard is None:
            raise RuntimeError(f"account {account_id} holds legacy funding but has no migration")
        numerator, denominator = str(guard.outcome["ratio"]).split(":")
        return int(numerator), int(denominator)

    def charge_late(self, hold: Hold, provider: Mapping[str, Any], *, sid: str) -> tuple[Hold, bool]:
        """Charge a voided hold after all (Twilio reported it delivered), once: (hold, charged by this call).
        What the pools cannot cover is owed (the `owed` pseudo-pool), taken first from the next grants."""
        outcome = self._commit(hold.account_id, lambda state: M.late_charge(state, hold, provider, sid=sid))
        if isinstance(outcome, Refused):
            current = outcome.found
            if not isinstance(current, Hold):
                raise NotFound(f"Message {hold.message_id} does not exist.", {"message_id": hold.message_id})
            if current.status == "posted" and current.provider.get("late_charge"):
                return current, False
            raise HoldEnded(f"Message {hold.message_id} is {current.status}.", {"status": current.status})
        owed = sum(e.amount for e in outcome.change.movement.entries if e.pool == L.OWED)
        count("LateCharges")
        count("CreditsOwed", owed)
        return outcome.change.result, True

    def charge_earlier_try(self, hold: Hold, try_number: int, *, sid: str) -> tuple[str, bool]:
        """Charge an earlier try of `hold`'s message that Twilio reported sent after all, once per try: (the SID
        that try was charged under, charged by this call). What the pools cannot cover is owed."""
        outcome = self._commit(
            hold.account_id, lambda state: M.late_charge_earlier_try(state, hold, try_number, sid)
        )
        if isinstance(outcome, Refused):
            assert isinstance(outcome.found, Guard)
            return str(outcome.found.outcome.get("sid")), False
        owed = sum(e.amount for e in outcome.change.movement.entries if e.pool == L.OWED)
        count("LateCharges")
        count("CreditsOwed", owed)
        return sid, True

    def record_delivery(self, hold: Hold, status: str, *, sid: str, settled: frozenset[str]) -> bool:
        """Note a later delivery status on a charged message (no credits move). False when its condition
        refused it (the hold changed since it was read)."""
        return self._write(DeliveryStatus(hold.account_id, hold.message_id, status, sid, settled)) is None


def replayed(guard: Guard, request_hash: str, what: str) -> Mapping[str, Any]:
    """The first answer of an operation whose id (the caller's Idempotency-Key) came again: refused when the
    request differs from the first one's."""
    if guard.request_hash != request_hash:
        raise IdempotencyKeyReused(
            f"This Idempotency-Key was already used with a different {what}.", {"header": "Idempotency-Key"}
        )
    return dict(guard.outcome)


def _retryable(hold: Hold, request: M.HoldRequest) -> bool:
    """The same request's earlier try, voided because Twilio was busy: nothing was sent, the key may be used."""
    return (
        hold.status == "voided"
        and bool(hold.provider.get("retryable"))
        and (hold.request_hash == request.request_hash)
    )
