"""Auto-recharge: settings, one claimed recharge in flight per account and region, the off-session charge."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from smscredits.adapters.ledger_store import LedgerStore, Write, iso, parse_time
from smscredits.domain import ledger as L
from smscredits.domain.account import Account
from smscredits.domain.catalog import pack_price_cents
from smscredits.domain.errors import Conflict, InvalidRequest, UpstreamUnavailable
from smscredits.observability import count, logger
from smscredits.services import orders
from smscredits.services.ports import Payments
from smscredits.services.purchases import Paid, grant_purchase, update_auto_recharge

MAX_CONSECUTIVE_FAILURES = 3
# A claim not settled within this time (its request died) may be retried under the same recharge id,
# which Stripe's idempotency key turns into the same PaymentIntent, never a second charge.
CLAIM_LEASE_SECONDS = 120
WAIT_POLLS = 25
CLAIM_TRIES = 3
WAIT_SECONDS = 0.2
DISABLED_DECLINED = "card_declined"
DISABLED_AUTHENTICATION = "authentication_required"
DISABLED_DISPUTE = "payment_disputed"
SETTING_FIELDS = ("enabled", "regions", "monthly_cap_cents")


class RechargeRefused(Conflict):
    code = "recharge_refused"


class RechargeInFlight(RechargeRefused):
    code = "recharge_in_flight"


class CapReached(RechargeRefused):
    code = "recharge_cap_reached"


class NotNeeded(RechargeRefused):
    """Credits arrived (another recharge, a purchase) between the short send and its claim."""

    code = "recharge_not_needed"


# ---- settings ---------------------------------------------------------------------------------------


def settings_view(account: Account) -> dict[str, Any]:
    settings = account.auto_recharge
    return {
        "enabled": bool(settings.get("enabled", False)),
        "regions": {
            code: {"packs": int(rule["packs"]), "threshold": int(rule.get("threshold", 0))}
            for code, rule in (settings.get("regions") or {}).items()
        },
        "monthly_cap_cents": settings.get("monthly_cap_cents"),
        "card_on_file": chargeable_card(settings),
        "spent_this_period_cents": _spent(settings, account),
        "consecutive_failures": int(settings.get("consecutive_failures", 0)),
        "disabled_reason": settings.get("disabled_reason"),
        "last_recharge_at": settings.get("last_recharge_at"),
    }


def put_settings(
    store: LedgerStore,
    account_id: str,
    *,
    enabled: bool,
    regions: Mapping[str, Mapping[str, int]],
    monthly_cap_cents: int | None,
) -> dict[str, Any]:
    """Replace the settings; the state (card, spending, failures, in-flight recharges) is kept.
    Switching it on again clears the reason it was switched off and the failure count."""
    if enabled and monthly_cap_cents is None:
        raise InvalidRequest(
            "A monthly cap is required to switch auto-recharge on.", {"monthly_cap_cents": None}
        )
    if enabled and not regions:
        raise InvalidRequest("Name at least one region to recharge.", {"regions": {}})

    def change(settings: dict[str, Any]) -> dict[str, Any]:
        if enabled and not settings.get("enabled"):
            settings.update(disabled_reason=None, consecutive_failures=0)
        settings.update(
            enabled=enabled,
            regions={code: dict(rule) for code, rule in regions.items()},
            monthly_cap_cents=monthly_cap_cents,
        )
        return settings

    return settings_view(update_auto_recharge(store, account_id, change, f"auto-recharge:{account_id}"))


def chargeable_card(settings: Mapping[str, Any]) -> bool:
    return bool(settings.get("customer_id") and settings.get("payment_method_id"))


def applies(account: Account, region: str) -> bool:
    """Whether a send short of credits in `region` should try a recharge (read without a round trip)."""
    settings = account.auto_recharge
    return bool(
        account.credit_model == "segment"
        and settings.get("enabled")
        and not settings.get("disabled_reason")
        and chargeable_card(settings)
        and region in (settings.get("regions") or {})
    )


def _spent(settings: Mapping[str, Any], account: Account) -> int:
    """Spending counts per billing period: a new period starts from zero."""
    if settings.get("spent_period") != account.period_start.isoformat():
        return 0
    return int(settings.get("spent_this_period_cents", 0))


# ---- the claim --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    recharge_id: str
    region: str
    packs: int
    amount_cents: int
    customer: str
    payment_method: str


def claim(store: LedgerStore, account_id: str, region: str, needed: int) -> Claim:
    """Mark one recharge in flight for (account, region), reserving its price under the monthly cap.

    The write is pinned to the balance version, so of any number of concurrent claimers exactly one
    succeeds; the others see its claim and get RechargeInFlight. A claim carries its caller's token, so
    a retry of our own claim whose answer was lost (a timeout after it landed) finds it and goes on."""
    token = uuid.uuid4().hex

    def build(state: Account) -> Write:
        if not applies(state, region):
            raise RechargeRefused("Auto-recharge is off for this region.", {"region": region})
        if state.pools.get(L.INCLUDED, 0) + state.pools.get(L.purchased_pool(region), 0) >= needed:
            raise NotNeeded("The pools cover the message now.", {"region": region})
        settings = _settings_copy(state)
        inflight = dict(settings.get("inflight") or {})
        now = store.clock()
        current = inflight.get(region)
        if current and current.get("token") == token:
            raise _OwnClaim(
                Claim(
                    current["recharge_id"],
                    region,
                    int(current["packs"]),
                    int(current["amount_cents"]),
                    settings["customer_id"],
                    settings["payment_method_id"],
                )
            )
        if current and parse_time(current["expires_at"]) > now:
            raise RechargeInFlight(
                "A recharge is already in flight.", {"recharge_id": current["recharge_id"]}
            )
        if (
            current
        ):  # its request died: retry the same recharge (same Stripe idempotency key, already counted)
            recharge_id, packs, amount = (
                current["recharge_id"],
                int(current["packs"]),
                int(current["amount_cents"]),
            )
        else:
            packs = int(settings["regions"][region]["packs"])
            amount = pack_price_cents(region, packs)
            spent = _spent(settings, state)
            cap = int(settings.get("monthly_cap_cents") or 0)
            if spent + amount > cap:
                raise CapReached(
                    "This recharge would pass the monthly cap.",
                    {"spent_this_period_cents": spent, "amount_cents": amount, "monthly_cap_cents": cap},
                )
            attempt = int(settings.get("attempts", 0)) + 1
            recharge_id = f"rch_{state.account_id}_{region}_{attempt}"
            settings.update(
                attempts=attempt,
                spent_period=state.period_start.isoformat(),
                spent_this_period_cents=spent + amount,
            )
        inflight[region] = {
            "recharge_id": recharge_id,
            "packs": packs,
            "amount_cents": amount,
            "expires_at": iso(now + timedelta(seconds=CLAIM_LEASE_SECONDS)),
            "token": token,
        }
        settings["inflight"] = inflight
        found = Claim(
            recharge_id, region, packs, amount, settings["customer_id"], settings["payment_method_id"]
        )
        # A new recharge is recorded as an order with its claim (a retried one was recorded by its first).
        order = [] if current else [_order_put(store, found, state.account_id, token)]
        return Write(
            L.Plan(state.pools, state.held, ()),
            f"claim:{recharge_id}",
            {},
            items=order,
            account_changes={"auto_recharge": settings},
            result=found,
        )

    def recorded(item: dict[str, Any]) -> Claim:
        """The order of this recharge id exists: ours when it carries our token (our write landed and its
        answer was lost), else another claimer's that landed first."""
        if item.get("token") != token:
            raise RechargeInFlight("A recharge is already in flight.", {"recharge_id": item.get("order_id")})
        return _claim_of(item, region)

    try:
        _, write = store.apply(account_id, build, recorded)
    except _OwnClaim as own:
        return own.claim
    if isinstance(write, Claim):
        return write
    claimed: Claim = write.result
    return claimed


def _order_put(store: LedgerStore, found: Claim, account_id: str, token: str) -> dict[str, Any]:
    return orders.recharge_order_put(
        store,
        recharge_id=found.recharge_id,
        account_id=account_id,
        region=found.region,
        packs=found.packs,
        amount_cents=found.amount_cents,
        customer_id=found.customer,
        payment_method=found.payment_method,
        token=token,
    )


def _claim_of(item: Mapping[str, Any], region: str) -> Claim:
    order = orders.order_from_item(item)
    return Claim(
        order.order_id, region, order.packs, order.amount_cents, order.customer_id, str(order.payment_method)
    )


class _OwnClaim(Exception):
    """The in-flight claim is the one this call wrote (its answer was lost): use it, do not wait for it."""

    def __init__(self, claim: Claim) -> None:
        super().__init__("own claim")
        self.claim = claim


def _settings_copy(state: Account) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in state.auto_recharge.items()}


# ---- charge and settle ------------------------------------------------------------------------------


def charge(store: LedgerStore, payments: Payments, account_id: str, region: str, needed: int) -> str:
    """Claim, charge off-session, settle. Returns succeeded | pending | declined | authentication_required.
    Raises NotNeeded / RechargeInFlight / CapReached / RechargeRefused when no charge was made."""
    claimed = claim(store, account_id, region, needed)
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
    if outcome.result == "succeeded":
        settle_success(store, intent, source="charge")
    elif outcome.result in ("declined", "authentication_required"):
        record_failure(
            store,
            account_id=account_id,
            region=region,
            recharge_id=claimed.recharge_id,
            code=outcome.code or outcome.result,
            message=outcome.message,
        )
    logger.info("recharge", extra={"recharge_id": claimed.recharge_id, "result": outcome.result})
    return outcome.result


def settle_success(store: LedgerStore, intent: Mapping[str, Any], *, source: str) -> str:
    """Grant a recharge's packs once (the synchronous answer and payment_intent.succeeded share the key)
    and, in the same transaction, release its claim and reset the failure count. Only a recharge this
    service started (its order) is granted, on the order's terms; anything else is recorded as unmatched."""
    metadata = intent.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    intent_id = orders.stripe_id(intent.get("id"))
    customer = intent.get("customer")
    try:
        order = orders.match(
            store,
            kind="recharge",
            metadata=metadata,
            amount=intent.get("amount_received", intent.get("amount")),
            currency=intent.get("currency"),
            customer=str(customer.get("id")) if isinstance(customer, Mapping) else customer,
            payment_intent=intent_id,
        )

        def changes(state: Account) -> dict[str, Any]:
            settings = _settings_copy(state)
            _release(settings, order.region, order.order_id)
            settings.update(consecutive_failures=0, last_recharge_at=iso(store.clock()))
            return {"auto_recharge": settings}

        applied = grant_purchase(
            store, Paid(order, intent_id), source=f"recharge:{source}", account_changes=changes
        )
    except orders.Unmatched as unmatched:
        return orders.record_unmatched(
            store,
            object_id=intent_id,
            event_type=f"payment_intent.succeeded ({source})",
            unmatched=unmatched,
            payment=orders.payment_summary(intent),
        )
    if applied:
        count("RechargeSucceeded")
        publish(
            "recharge.succeeded",
            {
                "account_id": order.account_id,
                "region": order.region,
                "credits": order.credits,
                "recharge_id": order.order_id,
            },
        )
    return "granted" if applied else "duplicate"


def _release(settings: dict[str, Any], region: str, recharge_id: str) -> bool:
    inflight = dict(settings.get("inflight") or {})
    if (inflight.get(region) or {}).get("recharge_id") != recharge_id:
        return False
    del inflight[region]
    settings["inflight"] = inflight
    return True


def record_failure(
    store: LedgerStore, *, account_id: str, region: str, recharge_id: str, code: str, message: str | None
) -> str:
    """A recharge certainly not paid: release its claim and its reserved spending, count the failure, and
    switch auto-recharge off after three in a row or when the bank wants the owner present. Once per id."""
    op_id = f"recharge-failed:{recharge_id}"
    disabled: list[str] = []

    def build(state: Account) -> Write:
        settings = _settings_copy(state)
        inflight = (settings.get("inflight") or {}).get(region) or {}
        if (
            _release(settings, region, recharge_id)
            and settings.get("spent_period") == state.period_start.isoformat()
        ):
            spent = int(settings.get("spent_this_period_cents", 0)) - int(inflight.get("amount_cents", 0))
            settings["spent_this_period_cents"] = max(0, spent)
        failures = int(settings.get("consecutive_failures", 0)) + 1
        settings["consecutive_failures"] = failures
        settings["last_failure"] = {
            "recharge_id": recharge_id,
            "code": code,
            "message": message,
            "at": iso(store.clock()),
        }
        reason = None
        if code == DISABLED_AUTHENTICATION:
            reason = DISABLED_AUTHENTICATION
        elif failures >= MAX_CONSECUTIVE_FAILURES:
            reason = DISABLED_DECLINED
        if reason and settings.get("enabled"):
            settings.update(enabled=False, disabled_reason=reason)
            disabled[:] = [reason]
        guard = store.guard_item(account_id, op_id, {"code": code, "failures": failures})
        return Write(
            L.Plan(state.pools, state.held, ()),
            op_id,
            {},
            items=[guard],
            account_changes={"auto_recharge": settings},
        )

    _, result = store.apply(account_id, build, lambda item: item)
    if not isinstance(result, Write):
        return "duplicate"
    count("RechargeFailed")
    publish(
        "recharge.failed",
        {"account_id": account_id, "region": region, "recharge_id": recharge_id, "code": code},
    )
    if disabled:
        publish("auto_recharge.disabled", {"account_id": account_id, "reason": disabled[0]})
    return "recorded"


def pause_for_dispute(state: Account) -> dict[str, Any]:
    """Account changes that switch auto-recharge off because a payment was disputed."""
    settings = _settings_copy(state)
    if not settings:
        return {}
    settings.update(enabled=False, disabled_reason=DISABLED_DISPUTE)
    return {"auto_recharge": settings}


def failed_intent(store: LedgerStore, intent: Mapping[str, Any]) -> str:
    """payment_intent.payment_failed for one of our recharges (the synchronous answer may have come first).
    Only a recharge this service started, charged to its customer for its amount, counts as a failure."""
    metadata = intent.get("metadata")
    order_id = metadata.get("order_id") if isinstance(metadata, Mapping) else None
    order = orders.find_order(store, order_id)
    if (
        order is None
        or order.kind != "recharge"
        or intent.get("customer") != order.customer_id
        or intent.get("amount") != order.amount_cents
    ):
        logger.warning("payment failed", extra={"payment_intent": intent.get("id"), "order_id": order_id})
        return "ignored"
    error = intent.get("last_payment_error") or {}
    return record_failure(
        store,
        account_id=order.account_id,
        region=order.region,
        recharge_id=order.order_id,
        code=str(error.get("code") or error.get("decline_code") or "payment_failed"),
        message=error.get("message"),
    )


# ---- the send path ----------------------------------------------------------------------------------


def recharge_for_send(
    store: LedgerStore, payments: Callable[[], Payments], account_id: str, region: str, needed: int
) -> bool:
    """A send found too few credits: complete a recharge now, or wait for the one in flight. True when
    a retry of the reserve may now succeed."""
    for _ in range(CLAIM_TRIES):
        try:
            result = charge(store, payments(), account_id, region, needed)
        except NotNeeded:
            return True
        except RechargeInFlight:
            return _wait_for_recharge(store, account_id, region, needed)
        except UpstreamUnavailable:
            time.sleep(WAIT_SECONDS)  # the balance was too busy to claim; another send may claim first
            continue
        except RechargeRefused:
            return False
        if result == "pending":
            return _wait_for_recharge(store, account_id, region, needed)
        return result == "succeeded"
    return _wait_for_recharge(store, account_id, region, needed)


def recharge_at_threshold(
    store: LedgerStore, payments: Callable[[], Payments], account_id: str, region: str
) -> str | None:
    """A send's debit may have left the region's spendable balance at or below its threshold: if so, run
    one recharge now. Never waits for one in flight. Returns the charge's result, or None when none was made."""
    account = store.cached_account(account_id) or store.get_account(account_id)
    if not applies(account, region):
        return None
    threshold = int(account.auto_recharge["regions"][region].get("threshold", 0))
    if spendable(account, region) > threshold:
        return None
    try:
        # One credit above the threshold is "enough": the claim refuses if credits arrived meanwhile.
        return charge(store, payments(), account_id, region, threshold + 1)
    except RechargeRefused as refused:
        logger.info("threshold recharge not made", extra={"region": region, "reason": refused.code})
        return None


def spendable(account: Account, region: str) -> int:
    return account.pools.get(L.INCLUDED, 0) + account.pools.get(L.purchased_pool(region), 0)


def _wait_for_recharge(store: LedgerStore, account_id: str, region: str, needed: int) -> bool:
    for _ in range(WAIT_POLLS):
        time.sleep(WAIT_SECONDS)
        account = store.get_account(account_id)
        covered = account.pools.get(L.INCLUDED, 0) + account.pools.get(L.purchased_pool(region), 0) >= needed
        if covered or region not in (account.auto_recharge.get("inflight") or {}):
            return covered
    return False


def publish(detail_type: str, detail: Mapping[str, Any]) -> None:
    from smscredits import runtime

    try:
        runtime.events().publish(detail_type, detail)
    except Exception:  # the movement is committed; a lost notification must not fail it
        logger.exception("event publish failed", extra={"detail_type": detail_type})
