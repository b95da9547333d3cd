"""The Ledger port's operations that come from payments (orders, a paid pack's grant, clawbacks, auto-recharge),
written once for both ledgers, as adapters/ledger_operations.py's: each computes its Change with a pure
function of domain/payment_movements.py and decides what a refused precondition means."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from smscredits.domain import auto_recharge as AR
from smscredits.domain import payment_movements as P
from smscredits.domain.account import Account
from smscredits.domain.changes import (
    Change,
    Committed,
    Guard,
    NewOrder,
    NewUnmatched,
    OrderNote,
    OrderSession,
    Record,
    Refused,
)
from smscredits.domain.clawbacks import Clawback, Clawed, PaymentMoved
from smscredits.domain.orders import Order, Paid, Payment, Unmatched, UnmatchedPayment
from smscredits.observability import count, logger

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Clock


def new_attempt(attempt_id: str | None = None) -> str:
    """The id of one call of an operation: its own retry (the same id) is not a duplicate."""
    return attempt_id or uuid.uuid4().hex


def ours(found: Any, attempt: str) -> bool:
    """Whether a guard found in the way was written by this call (its landed write whose answer was lost)."""
    return isinstance(found, Guard) and found.attempt_id == attempt


class PaymentOperations(ABC):
    clock: Clock

    @abstractmethod
    def get_account(self, account_id: str) -> Account: ...

    @abstractmethod
    def get_order(self, order_id: str) -> Order | None: ...

    @abstractmethod
    def get_payment(self, payment_intent: str) -> Payment | None: ...

    @abstractmethod
    def _commit(self, account_id: str, build: Callable[[Account], Change]) -> Committed | Refused: ...

    @abstractmethod
    def _write(self, record: Record) -> Refused | None: ...

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
            # The order was written before Stripe was asked: its absence now is a bug, never the caller's.
            raise RuntimeError(f"order {order.order_id} is gone")
        return recorded

    def note_order(
        self,
        order_id: str,
        *,
        payment_intent: str | None = None,
        status: str | None = None,
        failure: str | None = None,
    ) -> Order | None:
        """Note what became of an order short of a grant (changes.OrderNote): the order as noted, or None when
        the note was refused (no such order, another PaymentIntent bound, or a status for a paid order)."""
        refused = self._write(OrderNote(order_id, payment_intent, status, failure))
        if refused is not None:
            return None
        return self.get_order(order_id)

    def grant_purchase(
        self,
        paid: Paid,
        *,
        source: str,
        auto_recharge: Callable[[AR.AutoRecharge], AR.AutoRecharge] | None = None,
        attempt_id: str | None = None,
    ) -> bool:
        """Grant a paid order once (False: a duplicate); Unmatched when another PaymentIntent paid it first."""
        attempt = new_attempt(attempt_id)

        def build(state: Account) -> Change:
            return P.grant_purchase(
                state, paid, source=source, now=self.clock(), attempt_id=attempt, auto_recharge=auto_recharge
            )

        outcome = self._commit(paid.order.account_id, build)
        if isinstance(outcome, Refused) and isinstance(outcome.found, Order):
            raise Unmatched(
                "paid_by_another_payment_intent",
                order_id=paid.order.order_id,
                recorded=outcome.found.payment_intent,
            )
        applied = isinstance(outcome, Committed) or ours(outcome.found, attempt)
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
        self, payment: Payment, clawback: Clawback, *, op_id: str, reference: Mapping[str, Any]
    ) -> Clawed | None:
        """One step of a payment's refunds and disputes, once per op_id: what it moved, or None for a
        duplicate. PaymentMoved when another step of the payment landed since it was read."""

        def build(state: Account) -> Change:
            return P.claw_back(state, payment, clawback, op_id=op_id, reference=reference)

        outcome = self._commit(payment.account_id, build)
        if isinstance(outcome, Refused):
            if isinstance(outcome.found, Payment):
                raise PaymentMoved()
            return None
        clawed: Clawed = outcome.change.result
        return clawed

    def record_unmatched(self, unmatched: UnmatchedPayment) -> bool:
        """Keep a payment that matches no order; False when it was kept before."""
        return self._write(NewUnmatched(unmatched)) is None

    # -- auto-recharge ----------------------------------------------------------------------------------

    def update_auto_recharge(
        self, account_id: str, change: Callable[[AR.AutoRecharge], AR.AutoRecharge], *, op_id: str
    ) -> Account:
        """Rewrite auto-recharge from its current state, pinned to the balance version like every write."""
        outcome = self._commit(account_id, lambda state: P.auto_recharge_settings(state, change, op_id))
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
                lambda state: P.claim_recharge(state, region, needed, now=self.clock(), token=token),
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
            return P.recharge_failed(state, region, recharge_id, code, message, now=self.clock())

        outcome = self._commit(account_id, build)
        if isinstance(outcome, Refused):
            return False, None
        disabled: str | None = outcome.change.result
        return True, disabled
