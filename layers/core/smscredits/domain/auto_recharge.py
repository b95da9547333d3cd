"""Auto-recharge as the account keeps it: the owner's settings, the state of its recharges (card, spending this
period, failures, at most one recharge in flight per region) and the pure rules that change them.

The state is a value: every rule returns a new one, and the ledger writes it with a movement pinned to the
balance version, so two processes never apply a rule to the same state twice. NamedTuples rather than
dataclasses: every function decodes an account on its first request, and a NamedTuple costs about a tenth of
a frozen dataclass to define (cold start, docs/performance.md)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from smscredits.domain.catalog import pack_price_cents
from smscredits.domain.errors import Conflict, InvalidRequest
from smscredits.domain.ledger import INCLUDED, purchased_pool
from smscredits.domain.periods import iso, parse_iso

if TYPE_CHECKING:
    from smscredits.domain.account import Account

MAX_CONSECUTIVE_FAILURES = 3
# A claim not settled within this time (its request died) may be retried under the same recharge id. Stripe's
# idempotency key turns a retry into the same PaymentIntent only while Stripe keeps the key (24 hours), so a
# retried claim first looks for the PaymentIntent its recharge made (services/recharge.py).
CLAIM_LEASE_SECONDS = 120
DISABLED_DECLINED = "card_declined"
DISABLED_AUTHENTICATION = "authentication_required"
DISABLED_DISPUTE = "payment_disputed"


class RechargeRefused(Conflict):
    code = "recharge_refused"


class RechargeInFlight(RechargeRefused):
    code = "recharge_in_flight"


class CapReached(RechargeRefused):
    code = "recharge_cap_reached"


class NotNeeded(RechargeRefused):
    """Credits arrived (another recharge, a purchase) between the short send and its claim."""

    code = "recharge_not_needed"


class RegionRule(NamedTuple):
    """Buy `packs` packs when the region's spendable credits fall to `threshold` (or a send runs short)."""

    packs: int
    threshold: int = 0


class InFlight(NamedTuple):
    """The one recharge claimed for a region and not settled yet; its lease ends at `expires_at`."""

    recharge_id: str
    packs: int
    amount_cents: int
    expires_at: datetime
    token: str  # the claiming call's: its own retry after a lost answer finds its claim here


class LastFailure(NamedTuple):
    recharge_id: str
    code: str
    message: str | None
    at: datetime


class Claim(NamedTuple):
    """A recharge this account may charge now: its id (the Stripe idempotency key), what and whom to charge."""

    recharge_id: str
    region: str
    packs: int
    amount_cents: int
    customer: str
    payment_method: str
    retried: bool = False  # claimed again after its lease ran out: Stripe may have charged it already


_NO_RULES: Mapping[str, RegionRule] = MappingProxyType({})
_NONE_IN_FLIGHT: Mapping[str, InFlight] = MappingProxyType({})


class AutoRecharge(NamedTuple):
    enabled: bool = False
    regions: Mapping[str, RegionRule] = _NO_RULES
    monthly_cap_cents: int | None = None
    customer_id: str | None = None  # Stripe's customer, remembered from the first checkout
    payment_method_id: str | None = None  # the card a checkout saved for off-session charges
    spent_period: date | None = None  # the billing period `spent_this_period_cents` counts
    spent_this_period_cents: int = 0  # charged, or counted for a claim in flight
    consecutive_failures: int = 0
    disabled_reason: str | None = None
    last_failure: LastFailure | None = None
    last_recharge_at: datetime | None = None
    inflight: Mapping[str, InFlight] = _NONE_IN_FLIGHT
    attempts: int = 0  # numbers the recharge ids
    paused_by: tuple[str, ...] = ()  # the disputes whose withdrawn funds switched it off

    @property
    def card_on_file(self) -> bool:
        return bool(self.customer_id and self.payment_method_id)

    def spent(self, period_start: date) -> int:
        """Spending counts per billing period: a new period starts from zero."""
        return self.spent_this_period_cents if self.spent_period == period_start else 0

    def to_dict(self) -> dict[str, Any]:
        """The stored form (for the adapters): only what differs from a never-configured state."""
        out: dict[str, Any] = {}
        for name, value in zip(self._fields, self, strict=True):
            if value == _DEFAULT_VALUES[name]:
                continue
            out[name] = _stored(value)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AutoRecharge:
        """The state from its stored form (what `to_dict` wrote, or the untyped map older code wrote)."""
        failure = raw.get("last_failure")
        return cls(
            enabled=bool(raw.get("enabled", False)),
            regions={
                code: RegionRule(int(rule["packs"]), int(rule.get("threshold", 0)))
                for code, rule in (raw.get("regions") or {}).items()
            },
            monthly_cap_cents=_int_or_none(raw.get("monthly_cap_cents")),
            customer_id=raw.get("customer_id"),
            payment_method_id=raw.get("payment_method_id"),
            spent_period=date.fromisoformat(raw["spent_period"]) if raw.get("spent_period") else None,
            spent_this_period_cents=int(raw.get("spent_this_period_cents", 0)),
            consecutive_failures=int(raw.get("consecutive_failures", 0)),
            disabled_reason=raw.get("disabled_reason"),
            last_failure=(
                LastFailure(
                    failure["recharge_id"], failure["code"], failure.get("message"), parse_iso(failure["at"])
                )
                if failure
                else None
            ),
            last_recharge_at=parse_iso(raw["last_recharge_at"]) if raw.get("last_recharge_at") else None,
            inflight={
                region: InFlight(
                    claim["recharge_id"],
                    int(claim["packs"]),
                    int(claim["amount_cents"]),
                    parse_iso(claim["expires_at"]),
                    claim.get("token", ""),
                )
                for region, claim in (raw.get("inflight") or {}).items()
            },
            attempts=int(raw.get("attempts", 0)),
            paused_by=tuple(raw.get("paused_by") or ()),
        )


NEVER_SET_UP = AutoRecharge()
_DEFAULT_VALUES = dict(zip(AutoRecharge._fields, NEVER_SET_UP, strict=True))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _stored(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple record
        return {name: _stored(field) for name, field in zip(value._fields, value, strict=True)}
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return {key: _stored(field) for key, field in value.items()}
    return value


# ---- the rules --------------------------------------------------------------------------------------


def spendable(account: Account, region: str) -> int:
    """What a send to `region` can draw on: the included pool, then the region's purchased pool."""
    return account.pools.get(INCLUDED, 0) + account.pools.get(purchased_pool(region), 0)


def applies(account: Account, region: str) -> bool:
    """Whether a send short of credits in `region` should try a recharge."""
    auto = account.auto_recharge
    return bool(
        account.credit_model == "segment"
        and auto.enabled
        and not auto.disabled_reason
        and auto.card_on_file
        and region in auto.regions
    )


def at_threshold(account: Account, region: str) -> bool:
    """Whether a debit left the region at or below its threshold (so one recharge should run now)."""
    return (
        applies(account, region)
        and spendable(account, region) <= account.auto_recharge.regions[region].threshold
    )


def check_settings(
    *, enabled: bool, regions: Mapping[str, RegionRule], monthly_cap_cents: int | None
) -> None:
    """Auto-recharge can only be on with a monthly cap and at least one region."""
    if enabled and monthly_cap_cents is None:
        raise InvalidRequest(
            "A monthly cap is required to switch auto-recharge on.", {"monthly_cap_cents": None}
        )
    if enabled and not regions:
        raise InvalidRequest("Name at least one region to recharge.", {"regions": {}})


def with_settings(
    auto: AutoRecharge, *, enabled: bool, regions: Mapping[str, RegionRule], monthly_cap_cents: int | None
) -> AutoRecharge:
    """The owner's new settings; the state (card, spending, failures, recharges in flight) is kept.
    Switching it on again clears the reason it was switched off and the failure count. The owner's word
    outlasts a dispute's pause: the dispute's end no longer switches it back on."""
    check_settings(enabled=enabled, regions=regions, monthly_cap_cents=monthly_cap_cents)
    if enabled and not auto.enabled:
        auto = auto._replace(disabled_reason=None, consecutive_failures=0)
    return auto._replace(
        enabled=enabled, regions=dict(regions), monthly_cap_cents=monthly_cap_cents, paused_by=()
    )


def with_customer(auto: AutoRecharge, customer: str, payment_method: str | None) -> AutoRecharge:
    """Remember the Stripe customer (and the card a checkout saved). A customer another checkout stored
    first is kept, unless this one comes with a card."""
    if auto.customer_id not in (None, customer) and not payment_method:
        return auto
    if payment_method:
        return auto._replace(customer_id=customer, payment_method_id=payment_method)
    return auto._replace(customer_id=customer)


def with_card(auto: AutoRecharge, customer: str, payment_method: str) -> AutoRecharge:
    """A card the owner put on file (a setup session): it replaces the last one, whose failures it does not
    inherit. A recharge switched off stays off until the owner switches it on again (`with_settings`)."""
    return auto._replace(customer_id=customer, payment_method_id=payment_method, consecutive_failures=0)


class OwnClaim(Exception):
    """The claim in flight is the one this call wrote (its answer was lost): use it, do not wait for it."""

    def __init__(self, claim: Claim) -> None:
        super().__init__("own claim")
        self.claim = claim


def claim(
    account: Account, region: str, needed: int, *, now: datetime, token: str
) -> tuple[AutoRecharge, Claim, bool]:
    """Claim one recharge in flight for `region`, its price counted against the monthly cap.

    Returns (the state with the claim, the claim, whether it is a new recharge whose order must be recorded).
    A claim whose lease ran out (its request died) is claimed again under the same recharge id, already
    counted. Raises RechargeRefused / NotNeeded / RechargeInFlight / CapReached, or OwnClaim when `token`'s
    own claim is already in flight."""
    if not applies(account, region):
        raise RechargeRefused("Auto-recharge is off for this region.", {"region": region})
    if spendable(account, region) >= needed:
        raise NotNeeded("The pools cover the message now.", {"region": region})
    auto = account.auto_recharge
    customer, method = str(auto.customer_id), str(auto.payment_method_id)
    current = auto.inflight.get(region)
    if current and current.token == token:
        raise OwnClaim(
            Claim(current.recharge_id, region, current.packs, current.amount_cents, customer, method)
        )
    if current and current.expires_at > now:
        raise RechargeInFlight("A recharge is already in flight.", {"recharge_id": current.recharge_id})
    if current:
        recharge_id, packs, amount = current.recharge_id, current.packs, current.amount_cents
    else:
        packs = auto.regions[region].packs
        amount = pack_price_cents(region, packs)
        spent = auto.spent(account.period_start)
        cap = auto.monthly_cap_cents or 0
        if spent + amount > cap:
            raise CapReached(
                "This recharge would pass the monthly cap.",
                {"spent_this_period_cents": spent, "amount_cents": amount, "monthly_cap_cents": cap},
            )
        attempt = auto.attempts + 1
        recharge_id = f"rch_{account.account_id}_{region}_{attempt}"
        auto = auto._replace(
            attempts=attempt, spent_period=account.period_start, spent_this_period_cents=spent + amount
        )
    lease = InFlight(recharge_id, packs, amount, now + timedelta(seconds=CLAIM_LEASE_SECONDS), token)
    auto = auto._replace(inflight={**auto.inflight, region: lease})
    claimed = Claim(recharge_id, region, packs, amount, customer, method, retried=current is not None)
    return auto, claimed, current is None


def released(auto: AutoRecharge, region: str, recharge_id: str) -> AutoRecharge | None:
    """The state without `recharge_id`'s claim; None when the region's claim in flight is not that one."""
    current = auto.inflight.get(region)
    if current is None or current.recharge_id != recharge_id:
        return None
    return auto._replace(inflight={code: lease for code, lease in auto.inflight.items() if code != region})


def after_success(auto: AutoRecharge, region: str, recharge_id: str, now: datetime) -> AutoRecharge:
    """A recharge was paid: its claim is released and the failure count starts again."""
    auto = released(auto, region, recharge_id) or auto
    return auto._replace(consecutive_failures=0, last_recharge_at=now)


def after_failure(
    account: Account, region: str, recharge_id: str, code: str, message: str | None, now: datetime
) -> tuple[AutoRecharge, int, str | None]:
    """A recharge certainly not paid: its claim and the spending counted for it are released, the failure is
    counted, and auto-recharge switches off after three in a row or when the bank wants the owner present.
    Returns (the state after, the failures in a row, the reason it was switched off now or None)."""
    auto = account.auto_recharge
    lease = auto.inflight.get(region)
    freed = released(auto, region, recharge_id)
    if freed is not None and lease is not None:
        auto = freed
        if auto.spent_period == account.period_start:
            auto = auto._replace(
                spent_this_period_cents=max(0, auto.spent_this_period_cents - lease.amount_cents)
            )
    failures = auto.consecutive_failures + 1
    auto = auto._replace(
        consecutive_failures=failures, last_failure=LastFailure(recharge_id, code, message, now)
    )
    reason = None
    if code == DISABLED_AUTHENTICATION:
        reason = DISABLED_AUTHENTICATION
    elif failures >= MAX_CONSECUTIVE_FAILURES:
        reason = DISABLED_DECLINED
    if reason and auto.enabled:
        return auto._replace(enabled=False, disabled_reason=reason), failures, reason
    return auto, failures, None


def paused_for_dispute(auto: AutoRecharge, dispute_id: str) -> AutoRecharge | None:
    """Auto-recharge switched off because a dispute withdrew a payment's funds; None when it is not running
    (never set up, or off for another reason: then the dispute's end has nothing to switch back on)."""
    if not (auto.enabled or auto.disabled_reason == DISABLED_DISPUTE) or dispute_id in auto.paused_by:
        return None
    return auto._replace(
        enabled=False, disabled_reason=DISABLED_DISPUTE, paused_by=(*auto.paused_by, dispute_id)
    )


def resumed_after_dispute(auto: AutoRecharge, dispute_id: str) -> AutoRecharge | None:
    """The dispute's funds came back: auto-recharge runs again if this dispute paused it and no other dispute
    still does; None when this dispute did not pause it (or the owner changed the settings since)."""
    if dispute_id not in auto.paused_by:
        return None
    rest = tuple(other for other in auto.paused_by if other != dispute_id)
    auto = auto._replace(paused_by=rest)
    if not rest and not auto.enabled and auto.disabled_reason == DISABLED_DISPUTE:
        auto = auto._replace(enabled=True, disabled_reason=None)
    return auto
