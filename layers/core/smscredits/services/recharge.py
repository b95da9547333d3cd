"""Auto-recharge use cases: the owner's settings, one claimed recharge charged off-session and settled, the
webhook's word on it, and the send path's Recharger (a send that runs short, a debit that reaches a
threshold). The rules themselves are domain/auto_recharge.py's."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from smscredits.domain import auto_recharge as AR
from smscredits.domain.account import Account
from smscredits.domain.errors import UpstreamUnavailable
from smscredits.domain.orders import Paid, Unmatched, payment_summary, receipt_url_of, stripe_id
from smscredits.domain.periods import iso
from smscredits.observability import count, logger
from smscredits.services import orders

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger, Payments

WAIT_POLLS = 25
CLAIM_TRIES = 3
WAIT_SECONDS = 0.2


# ---- settings ---------------------------------------------------------------------------------------


def settings_view(account: Account) -> dict[str, Any]:
    auto = account.auto_recharge
    return {
        "enabled": auto.enabled,
        "regions": {
            code: {"packs": rule.packs, "threshold": rule.threshold} for code, rule in auto.regions.items()
        },
        "monthly_cap_cents": auto.monthly_cap_cents,
        "card_on_file": auto.card_on_file,
        "spent_this_period_cents": auto.spent(account.period_start),
        "consecutive_failures": auto.consecutive_failures,
        "disabled_reason": auto.disabled_reason,
        "last_recharge_at": iso(auto.last_recharge_at) if auto.last_recharge_at else None,
    }


def put_settings(
    ledger: Ledger,
    account_id: str,
    *,
    enabled: bool,
    regions: Mapping[str, Mapping[str, int]],
    monthly_cap_cents: int | None,
) -> dict[str, Any]:
    """Replace the owner's settings (auto_recharge.with_settings); the state is kept."""
    rules = {
        code: AR.RegionRule(int(rule["packs"]), int(rule.get("threshold", 0)))
        for code, rule in regions.items()
    }

    def change(auto: AR.AutoRecharge) -> AR.AutoRecharge:
        return AR.with_settings(auto, enabled=enabled, regions=rules, monthly_cap_cents=monthly_cap_cents)

    AR.check_settings(enabled=enabled, regions=rules, monthly_cap_cents=monthly_cap_cents)  # before any write
    return settings_view(ledger.update_auto_recharge(account_id, change, op_id=f"auto-recharge:{account_id}"))


# ---- charge and settle ------------------------------------------------------------------------------


def charge(ledger: Ledger, payments: Payments, account_id: str, region: str, needed: int) -> str:
    """Claim, charge off-session, settle. Returns succeeded | pending | declined | authentication_required.
    Raises NotNeeded / RechargeInFlight / CapReached / RechargeRefused when no charge was made."""
    claimed = ledger.claim_recharge(account_id, region, needed)
    if claimed.retried:
        earlier = _earlier_intent(ledger, payments, claimed)
        if earlier is not None:  # Stripe charged (or refused) it already: settle that, never charge again
            result = _settle_found(ledger, account_id, claimed, earlier)
            logger.info("recharge settled from its PaymentIntent", extra={"recharge_id": claimed.recharge_id})
            return result
    metadata = {
        "order_id": claimed.recharge_id,  # the recharge's order; the rest is for people reading Stripe
        "account_id": account_id,
        "region": region,
        "packs": str(claimed.packs),
        "kind": "recharge",
        "recharge_id": claimed.recharge_id,
    }
    outcome = payments.charge_off_session(
        amount_cents=claimed.amount_cents,
        customer=claimed.customer,
        payment_method=claimed.payment_method,
        metadata=metadata,
        idempotency_key=claimed.recharge_id,
    )
    intent = outcome.payment_intent or {}
    if intent.get("id") and outcome.result != "succeeded":
        # Kept as soon as Stripe names it: a retried claim (after Stripe forgot the key) retrieves it.
        ledger.note_order(claimed.recharge_id, payment_intent=stripe_id(intent["id"]))
    if outcome.result == "succeeded":
        settle_success(ledger, intent, source="charge")
    elif outcome.result in ("declined", "authentication_required"):
        record_failure(
            ledger,
            account_id=account_id,
            region=region,
            recharge_id=claimed.recharge_id,
            code=outcome.code or outcome.result,
            message=outcome.message,
        )
    logger.info("recharge", extra={"recharge_id": claimed.recharge_id, "result": outcome.result})
    return outcome.result


def _earlier_intent(ledger: Ledger, payments: Payments, claimed: AR.Claim) -> dict[str, Any] | None:
    """The PaymentIntent an earlier attempt of this recharge made at Stripe, if any."""
    order = ledger.get_order(claimed.recharge_id)
    return payments.find_recharge_intent(claimed.recharge_id, order.payment_intent if order else None)


def _settle_found(ledger: Ledger, account_id: str, claimed: AR.Claim, intent: Mapping[str, Any]) -> str:
    """Settle a retried recharge from the PaymentIntent its first attempt made, as the answer would have."""
    status = intent.get("status")
    if status == "succeeded":
        settle_success(ledger, intent, source="lookup")
        return "succeeded"
    if status in ("requires_payment_method", "requires_action", "canceled"):
        error = intent.get("last_payment_error") or {}
        code = "authentication_required" if status == "requires_action" else "payment_failed"
        record_failure(
            ledger,
            account_id=account_id,
            region=claimed.region,
            recharge_id=claimed.recharge_id,
            code=str(error.get("code") or error.get("decline_code") or code),
            message=error.get("message"),
        )
        return "authentication_required" if code == "authentication_required" else "declined"
    return "pending"  # processing: its payment_intent.* event settles it


def settle_success(
    ledger: Ledger,
    intent: Mapping[str, Any],
    *,
    source: str,
    find_receipt: Callable[[], str | None] | None = None,
) -> str:
    """Grant a recharge's packs once (the synchronous answer and payment_intent.succeeded share the key)
    and, in the same write, release its claim and reset the failure count. Only a recharge this service
    started (its order) is granted, on the order's terms; anything else is recorded as unmatched. Its
    recharge.succeeded is written with the grant (domain/payment_movements.py). The receipt is the one of the
    intent's expanded charge (the charge's answer and the lookup expand it), else `find_receipt`'s, asked only
    while the order is not paid yet (a paid order's grant is a duplicate)."""
    metadata = intent.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    intent_id = stripe_id(intent.get("id"))
    customer = intent.get("customer")
    try:
        order = orders.match(
            ledger,
            kind="recharge",
            metadata=metadata,
            amount=intent.get("amount_received", intent.get("amount")),
            currency=intent.get("currency"),
            customer=str(customer.get("id")) if isinstance(customer, Mapping) else customer,
            payment_intent=intent_id,
        )
        receipt = receipt_url_of(intent)
        if receipt is None and find_receipt is not None and order.status != "paid":
            receipt = find_receipt()
        applied = ledger.settle_recharge(Paid(order, intent_id, receipt_url=receipt), source=source)
    except Unmatched as unmatched:
        return orders.record_unmatched(
            ledger,
            object_id=intent_id,
            event_type=f"payment_intent.succeeded ({source})",
            unmatched=unmatched,
            payment=payment_summary(intent),
        )
    if applied:
        count("RechargeSucceeded")
    return "granted" if applied else "duplicate"


def record_failure(
    ledger: Ledger,
    *,
    account_id: str,
    region: str,
    recharge_id: str,
    code: str,
    message: str | None,
) -> str:
    """A recharge certainly not paid (auto_recharge.after_failure), once per recharge id; its recharge.failed
    (and auto_recharge.disabled) are written with it."""
    recorded, disabled = ledger.record_recharge_failure(
        account_id, region, recharge_id, code=code, message=message
    )
    if not recorded:
        return "duplicate"
    count("RechargeFailed")
    if disabled:
        logger.warning("auto-recharge disabled", extra={"account_id": account_id, "reason": disabled})
    return "recorded"


def settle_failed_intent(ledger: Ledger, intent: Mapping[str, Any]) -> str:
    """payment_intent.payment_failed for one of our recharges (the synchronous answer may have come first).
    Only a recharge this service started, charged to its customer for its amount, counts as a failure."""
    metadata = intent.get("metadata")
    order_id = metadata.get("order_id") if isinstance(metadata, Mapping) else None
    order = orders.find_order(ledger, order_id)
    if (
        order is None
        or order.kind != "recharge"
        or intent.get("customer") != order.customer_id
        or intent.get("amount") != order.amount_cents
    ):
        logger.warning("payment failed", extra={"payment_intent": intent.get("id"), "order_id": order_id})
        return "ignored"
    ledger.note_order(order.order_id, payment_intent=stripe_id(intent.get("id")))
    error = intent.get("last_payment_error") or {}
    return record_failure(
        ledger,
        account_id=order.account_id,
        region=order.region,
        recharge_id=order.order_id,
        code=str(error.get("code") or error.get("decline_code") or "payment_failed"),
        message=error.get("message"),
    )


# ---- the send path ----------------------------------------------------------------------------------


class AutoRecharger:
    """The Recharger port: what a send asks of auto-recharge. Stripe is reached (and its SDK loaded) only when
    a recharge is actually charged."""

    def __init__(
        self, ledger: Ledger, payments: Callable[[], Payments], *, provider_timeout: float = 8.0
    ) -> None:
        self.ledger = ledger
        self.payments = payments
        self.provider_timeout = provider_timeout  # the longest a Stripe or a Twilio request may take

    def _time_for(self, deadline: float | None, requests: int) -> bool:
        """Whether `requests` provider requests still fit before the deadline (with a second to answer)."""
        if deadline is None or time.monotonic() + requests * self.provider_timeout + 1 <= deadline:
            return True
        logger.warning("recharge skipped: too little time left in this request", extra={"requests": requests})
        count("RechargeSkippedForTime")
        return False

    def when_short(self, account_id: str, region: str, needed: int, *, deadline: float | None = None) -> bool:
        """Complete a recharge now, or wait for the one in flight. True when a retry of the hold may succeed.
        Only when the charge and then the message's own send fit before the deadline."""
        if not AR.applies(self.ledger.get_account(account_id), region) or not self._time_for(deadline, 2):
            return False
        for _ in range(CLAIM_TRIES):
            try:
                result = charge(self.ledger, self.payments(), account_id, region, needed)
            except AR.NotNeeded:
                return True
            except AR.RechargeInFlight:
                return self._wait_for_recharge(account_id, region, needed, deadline)
            except UpstreamUnavailable:
                time.sleep(WAIT_SECONDS)  # the balance was too busy to claim; another send may claim first
                continue
            except AR.RechargeRefused:
                return False
            if result == "pending":
                return self._wait_for_recharge(account_id, region, needed, deadline)
            return result == "succeeded"
        return self._wait_for_recharge(account_id, region, needed, deadline)

    def after_debit(self, account_id: str, region: str, *, deadline: float | None = None) -> None:
        """Run one recharge now if this debit left the region at or below its threshold and the charge fits
        before the deadline (the next send triggers it otherwise). Never waits for one in flight."""
        account = self.ledger.known_account(account_id)  # the balance after this send's write: no read
        if not AR.at_threshold(account, region) or not self._time_for(deadline, 1):
            return
        threshold = account.auto_recharge.regions[region].threshold
        try:
            # One credit above the threshold is "enough": the claim refuses if credits arrived meanwhile.
            charge(self.ledger, self.payments(), account_id, region, threshold + 1)
        except AR.RechargeRefused as refused:
            logger.info("threshold recharge not made", extra={"region": region, "reason": refused.code})

    def _wait_for_recharge(self, account_id: str, region: str, needed: int, deadline: float | None) -> bool:
        for _ in range(WAIT_POLLS):
            if not self._time_for(deadline, 1):  # the message's own send must still fit
                return False
            time.sleep(WAIT_SECONDS)
            account = self.ledger.get_account(account_id)
            covered = AR.spendable(account, region) >= needed
            if covered or region not in account.auto_recharge.inflight:
                return covered
        return False
