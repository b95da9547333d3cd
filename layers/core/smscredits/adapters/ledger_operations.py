"""The Ledger port's operations, written once for both ledgers (DynamoDB and in memory).

Each operation computes its Change with a pure function of domain/movements.py from the account state the
write will be pinned to, hands it to the ledger's commit, and decides what a refused precondition means: a
duplicate, a message that already ended, or its own earlier write found after a lost answer (the attempt id
it carries). A ledger provides the reads, `_commit` (a Change atomically, pinned to the balance version),
`_create` and `_write` (one record without a balance)."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from smscredits.domain import auto_recharge as AR
from smscredits.domain import movements as M
from smscredits.domain.account import Account, Hold
from smscredits.domain.catalog import PLANS
from smscredits.domain.changes import (
    Change,
    Committed,
    DeliveryStatus,
    Guard,
    NewOrder,
    NewUnmatched,
    OrderSession,
    Record,
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
from smscredits.domain.idempotency import request_hash as hashed
from smscredits.domain.orders import Clawback, Order, Paid, Payment, PaymentMoved, Unmatched, UnmatchedPayment
from smscredits.observability import count, logger
from smscredits.services.ports import Clock


def _attempt(attempt_id: str | None) -> str:
    return attempt_id or uuid.uuid4().hex


class LedgerOperations(ABC):
    def __init__(self, *, clock: Clock, legacy_rates: Mapping[str, int], sweep_grace_seconds: int) -> None:
        self.clock = clock
        self.legacy_rates = legacy_rates
        self.sweep_grace_seconds = sweep_grace_seconds

    # -- what each ledger provides ----------------------------------------------------------------------

    @abstractmethod
    def get_account(self, account_id: str) -> Account: ...

    @abstractmethod
    def known_account(self, account_id: str) -> Account: ...

    @abstractmethod
    def find_hold(self, account_id: str, message_id: str) -> Hold | None: ...

    @abstractmethod
    def get_order(self, order_id: str) -> Order | None: ...

    @abstractmethod
    def get_payment(self, payment_intent: str) -> Payment | None: ...

    @abstractmethod
    def find_operation(self, account_id: str, op_id: str) -> Guard | None: ...

    @abstractmethod
    def _commit(self, account_id: str, build: Callable[[Account], Change]) -> Committed | Refused: ...

    @abstractmethod
    def _create(self, account: Account, change: Change) -> None: ...

    @abstractmethod
    def _write(self, record: Record) -> Refused | None: ...

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

        def replayed(guard: Guard) -> Mapping[str, Any]:
            if guard.request_hash != request_hash:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different adjustment.",
                    {"header": "Idempotency-Key"},
                )
            return dict(guard.outcome)

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
            return self.known_account(account_id), replayed(guard)
        if isinstance(outcome, Refused):
            assert isinstance(outcome.found, Guard) and outcome.account is not None
            return outcome.account, replayed(outcome.found)
        return outcome.account, outcome.change.result

    def change_plan(self, account_id: str, plan: str, *, actor: str) -> tuple[Account, Mapping[str, Any]]:
        """An upgrade grants the difference now, a downgrade waits for the refresh; answers (account, outcome)."""
        try:
            outcome = self._commit(
                account_id, lambda state: M.change_plan(state, plan, allowances=PLANS, actor=actor)
            )
        except Unchanged as unchanged:
            return unchanged.account, unchanged.answer
        if isinstance(outcome, Refused):
            assert isinstance(outcome.found, Guard)
            return self.get_account(account_id), dict(outcome.found.outcome)
        return outcome.account, outcome.change.result

    def refresh_allowance(
        self, account_id: str, *, period_start: date, next_refresh_at: datetime, attempt_id: str | None = None
    ) -> tuple[Account, bool]:
        """The monthly refresh for one period, once per (account, period): (account, refreshed by this call)."""
        attempt = _attempt(attempt_id)

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
            return outcome.account, _ours(outcome.found, attempt)
        return outcome.account, True

    def migrate(
        self, account_id: str, *, ratio: tuple[int, int], actor: str, attempt_id: str | None = None
    ) -> M.Migration:
        """A legacy account's pool converted into purchased credits of its home region, once."""
        attempt = _attempt(attempt_id)
        pinned: list[Account] = []

        def build(state: Account) -> Change:
            pinned[:] = [state]
            return M.migrate(state, ratio=ratio, actor=actor, now=self.clock(), attempt_id=attempt)

        try:
            outcome = self._commit(account_id, build)
        except Unchanged as done:
            return M.Migration("already_migrated", done.account, done.account, 0)
        if isinstance(outcome, Refused):  # the guard exists: migrated by a concurrent call, or by this one
            current = self.get_account(account_id)
            if _ours(outcome.found, attempt):
                assert isinstance(outcome.found, Guard)
                return M.Migration(
                    "migrated", pinned[0], current, int(outcome.found.outcome.get("converted", 0))
                )
            return M.Migration("already_migrated", current, current, 0)
        before, converted = outcome.change.result
        return M.Migration("migrated", before, outcome.account, converted)

    # -- messages ---------------------------------------------------------------------------------------

    def hold(
        self, account_id: str, request: M.HoldRequest, *, attempt_id: str | None = None
    ) -> tuple[Hold, bool]:
        """Hold a message's credits. Returns (hold, created); created=False means the hold already existed for
        this message id: a duplicate request (the caller compares request_hash)."""
        attempt = _attempt(attempt_id)

        def build(state: Account) -> Change:
            return M.hold_message(
                state,
                request,
                now=self.clock(),
                attempt_id=attempt,
                legacy_rates=self.legacy_rates,
                sweep_grace_seconds=self.sweep_grace_seconds,
            )

        try:
            outcome = self._commit(account_id, build)
        except InsufficientCredits:
            # A replay of a message whose own hold took the last credits is a duplicate, not a 402.
            found = self.find_hold(account_id, request.message_id)
            if found is None:
                raise
            return found, found.attempt_id == attempt
        if isinstance(outcome, Refused):
            assert isinstance(outcome.found, Hold)
            return (
                outcome.found,
                outcome.found.attempt_id == attempt,
            )  # our own earlier attempt counts as created
        return outcome.change.result, True

    def post(self, hold: Hold, provider: Mapping[str, Any] | None = None, *, sid: str | None = None) -> Hold:
        """Charge a pending hold. Posting a posted hold returns it unchanged; a voided one is refused (HoldEnded).
        With `sid` (a status callback's), the write also requires that no other SID was recorded."""
        return self._end(hold, "posted", provider or {}, sid)

    def void(self, hold: Hold, provider: Mapping[str, Any] | None = None, *, sid: str | None = None) -> Hold:
        """Return a pending hold to its pools. Voiding a voided hold returns it; a posted one is refused."""
        return self._end(hold, "voided", provider or {}, sid)

    def _end(self, hold: Hold, status: str, provider: Mapping[str, Any], sid: str | None) -> Hold:
        def build(state: Account) -> Change:
            return M.end_hold(state, hold, status, provider, sid=sid, now=self.clock())

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
        ended: Hold = outcome.change.result
        return ended

    def refund(self, hold: Hold, provider: Mapping[str, Any]) -> tuple[Hold, bool]:
        """Return a posted message's credits (Twilio reported it failed), once: (hold, refunded by this call)."""
        outcome = self._commit(hold.account_id, lambda state: M.refund(state, hold, provider))
        if isinstance(outcome, Refused):
            current = outcome.found
            if not isinstance(current, Hold):
                raise NotFound(f"Message {hold.message_id} does not exist.", {"message_id": hold.message_id})
            if current.status == "refunded":
                return current, False
            raise HoldEnded(f"Message {hold.message_id} is {current.status}.", {"status": current.status})
        return outcome.change.result, True

    def record_delivery(self, hold: Hold, status: str, *, sid: str, settled: frozenset[str]) -> bool:
        """Note a later delivery status on a charged message (no credits move). False when its condition
        refused it (the hold changed since it was read)."""
        return self._write(DeliveryStatus(hold.account_id, hold.message_id, status, sid, settled)) is None

    # -- purchases and clawbacks ------------------------------------------------------------------------

    def open_order(self, order: Order) -> Order:
        """Record an order before Stripe is asked; the one already recorded under its id when there is one."""
        refused = self._write(NewOrder(order))
        if refused is None:
            return order
        assert isinstance(refused.found, Order)
        return refused.found

    def record_session(self, order: Order, session_id: str, url: str) -> Order:
        """Note the session Stripe created for the order. When Stripe made another one for the same key (its
        idempotency keys expire after 24 hours), the order keeps the first: the one the caller was answered."""
        refused = self._write(OrderSession(order.order_id, session_id, url))
        if refused is None:
            return order._replace(session_id=session_id, checkout_url=url, status="open")
        recorded = refused.found
        if not isinstance(recorded, Order) or recorded.session_id is None:
            raise RuntimeError(
                f"order {order.order_id} is gone"
            )  # we just wrote it: a bug, never the caller's
        return recorded

    def grant_purchase(
        self,
        paid: Paid,
        *,
        source: str,
        auto_recharge: Callable[[AR.AutoRecharge], AR.AutoRecharge] | None = None,
        attempt_id: str | None = None,
    ) -> bool:
        """Grant a paid order once (False: a duplicate); Unmatched when another PaymentIntent paid it first."""
        attempt = _attempt(attempt_id)

        def build(state: Account) -> Change:
            return M.grant_purchase(
                state, paid, source=source, now=self.clock(), attempt_id=attempt, auto_recharge=auto_recharge
            )

        outcome = self._commit(paid.order.account_id, build)
        if isinstance(outcome, Refused) and isinstance(outcome.found, Order):
            raise Unmatched(
                "paid_by_another_payment_intent",
                order_id=paid.order.order_id,
                recorded=outcome.found.payment_intent,
            )
        applied = isinstance(outcome, Committed) or _ours(outcome.found, attempt)
        if applied:
            count("PacksPurchased", paid.order.packs)
        logger.info("pack grant", extra={"key": paid.key, "applied": applied, "source": source})
        return applied

    def settle_recharge(self, paid: Paid, *, source: str) -> bool:
        """Grant a recharge's packs once and, in the same write, release its claim and reset the failures."""
        order = paid.order

        def succeeded(auto: AR.AutoRecharge) -> AR.AutoRecharge:
            return AR.after_success(auto, order.region, order.order_id, self.clock())

        return self.grant_purchase(paid, source=f"recharge:{source}", auto_recharge=succeeded)

    def claw_back(
        self,
        payment: Payment,
        clawback: Clawback,
        *,
        op_id: str,
        reference: Mapping[str, Any],
        pause_auto_recharge: bool = False,
    ) -> int | None:
        """Take back a clawback's due credits once per op_id: the credits taken, or None for a duplicate.
        PaymentMoved when another clawback of the payment landed since it was read."""

        def build(state: Account) -> Change:
            return M.claw_back(
                state,
                payment,
                clawback,
                op_id=op_id,
                reference=reference,
                pause_auto_recharge=pause_auto_recharge,
            )

        outcome = self._commit(payment.account_id, build)
        if isinstance(outcome, Refused):
            if isinstance(outcome.found, Payment):
                raise PaymentMoved()
            return None
        taken: int = outcome.change.result
        return taken

    def record_unmatched(self, unmatched: UnmatchedPayment) -> bool:
        """Keep a payment that matches no order; False when it was kept before."""
        return self._write(NewUnmatched(unmatched)) is None

    # -- auto-recharge ----------------------------------------------------------------------------------

    def update_auto_recharge(
        self, account_id: str, change: Callable[[AR.AutoRecharge], AR.AutoRecharge], *, op_id: str
    ) -> Account:
        """Rewrite auto-recharge from its current state, pinned to the balance version like every write."""
        outcome = self._commit(account_id, lambda state: M.auto_recharge_settings(state, change, op_id))
        return outcome.account if isinstance(outcome, Committed) else self.get_account(account_id)

    def claim_recharge(self, account_id: str, region: str, needed: int) -> AR.Claim:
        """Claim the one recharge in flight for (account, region). The write is pinned to the balance version,
        so of any number of concurrent claimers exactly one succeeds; the others see its claim and get
        RechargeInFlight. A claim carries its caller's token, so a retry of our own claim whose answer was
        lost finds it and goes on."""
        token = uuid.uuid4().hex
        try:
            outcome = self._commit(
                account_id,
                lambda state: M.claim_recharge(state, region, needed, now=self.clock(), token=token),
            )
        except AR.OwnClaim as own:
            return own.claim
        if isinstance(outcome, Refused):
            # The order of this recharge id exists: ours when it carries our token (our write landed and its
            # answer was lost), else another claimer's that landed first.
            order = outcome.found
            if not isinstance(order, Order) or order.token != token:
                raise AR.RechargeInFlight(
                    "A recharge is already in flight.",
                    {"recharge_id": order.order_id if isinstance(order, Order) else None},
                )
            return AR.Claim(
                order.order_id,
                region,
                order.packs,
                order.amount_cents,
                order.customer_id,
                str(order.payment_method),
            )
        claim: AR.Claim = outcome.change.result
        return claim

    def record_recharge_failure(
        self, account_id: str, region: str, recharge_id: str, *, code: str, message: str | None
    ) -> tuple[bool, str | None]:
        """A recharge certainly not paid, once per id: (recorded by this call, the reason auto-recharge was
        switched off by it or None)."""

        def build(state: Account) -> Change:
            return M.recharge_failed(state, region, recharge_id, code, message, now=self.clock())

        outcome = self._commit(account_id, build)
        if isinstance(outcome, Refused):
            return False, None
        disabled: str | None = outcome.change.result
        return True, disabled


def _ours(found: Any, attempt: str) -> bool:
    """Whether a guard found in the way was written by this call (its landed write whose answer was lost)."""
    return isinstance(found, Guard) and found.attempt_id == attempt
