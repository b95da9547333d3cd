"""What support may set on an account (at creation, or by PATCH /v1/admin/accounts/{id}) and the rule of each
change; pure, the day is the caller's (docs/billing-rules.md, "Account settings").

- A billing anchor is a day that has come: a future one is refused, never read as "day N of this month".
- A new billing day moves the next refresh to the first anniversary of the new anchor after today; the period
  the account is in runs until then (nothing lapses and nothing is granted at the change). The same billing day
  (another month or year) changes no date.
- A new Stripe customer replaces the old one; the card saved for the old one is dropped (Stripe charges a
  payment method only for the customer it is attached to), so auto-recharge waits for a card of the new one."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from smscredits.domain.account import ACCOUNT_ID_PATTERN
from smscredits.domain.errors import BillingAnchorInFuture, InvalidRequest
from smscredits.domain.periods import iso, period_containing, period_start_at

if TYPE_CHECKING:
    from smscredits.domain.account import Account
    from smscredits.domain.auto_recharge import AutoRecharge

STRIPE_CUSTOMER_PATTERN = r"^cus_[A-Za-z0-9]{1,250}$"
MAX_LOW_BALANCE_THRESHOLD = 1_000_000
MAX_BATCH_RATE = 100  # messages a second: about what Twilio's fastest senders (short codes) take


class AccountPatch(NamedTuple):
    """The settings a PATCH names; None: left as it is."""

    billing_anchor: date | None = None
    home_region: str | None = None
    stripe_customer_id: str | None = None
    low_balance_threshold: int | None = None
    smart_encoding: bool | None = None
    batch_rate_per_second: int | None = None

    def requested(self) -> dict[str, Any]:
        """What was asked, as plain values (the request hash of the PATCH's Idempotency-Key)."""
        return {
            name: value.isoformat() if isinstance(value, date) else value
            for name, value in self._asdict().items()
            if value is not None
        }


def refuse_future_anchor(anchor: date, today: date) -> None:
    if anchor > today:
        raise BillingAnchorInFuture(
            f"The billing anchor {anchor.isoformat()} is after today ({today.isoformat()}, UTC). An account's "
            "periods start on its anchor's day of the month from a day that has come: give today or an earlier "
            "date with the same day of the month.",
            {"billing_anchor": anchor.isoformat(), "today": today.isoformat()},
        )


def next_refresh_after(anchor: date, today: date) -> datetime:
    """The first anniversary of `anchor` after `today` (midnight UTC)."""
    _, next_start = period_containing(anchor, today)
    return period_start_at(next_start)


def with_stripe_customer(auto: AutoRecharge, customer: str) -> AutoRecharge:
    """The account's Stripe customer is `customer`; a card saved for another customer is dropped."""
    if auto.customer_id == customer:
        return auto
    return auto._replace(customer_id=customer, payment_method_id=None)


def patched_fields(state: Account, patch: AccountPatch, today: date) -> dict[str, Any]:
    """The account fields the patch changes (a field asked to stay as it is changes nothing)."""
    fields: dict[str, Any] = {}
    anchor = patch.billing_anchor
    if anchor is not None and anchor != state.billing_anchor:
        refuse_future_anchor(anchor, today)
        fields["billing_anchor"] = anchor
        if anchor.day != state.billing_anchor.day:
            fields["next_refresh_at"] = next_refresh_after(anchor, today)
    for name in ("home_region", "low_balance_threshold", "smart_encoding", "batch_rate_per_second"):
        value = getattr(patch, name)
        if value is not None and value != getattr(state, name):
            fields[name] = value
    customer = patch.stripe_customer_id
    if customer is not None and customer != state.auto_recharge.customer_id:
        fields["auto_recharge"] = with_stripe_customer(state.auto_recharge, customer)
    return fields


def account_view(account: Account) -> dict[str, Any]:
    """An account's settings and billing period as support reads them (plain values: a PATCH's guard keeps it)."""
    auto = account.auto_recharge
    return {
        "account_id": account.account_id,
        "plan": account.plan,
        "pending_plan": account.pending_plan,
        "credit_model": account.credit_model,
        "home_region": account.home_region,
        "billing_anchor": account.billing_anchor.isoformat(),
        "period_start": account.period_start.isoformat(),
        "next_refresh_at": iso(account.next_refresh_at),
        "stripe_customer_id": auto.customer_id,
        "card_on_file": auto.card_on_file,
        "low_balance_threshold": account.low_balance_threshold,
        "smart_encoding": account.smart_encoding,
        "batch_rate_per_second": account.batch_rate_per_second,
        "created_at": iso(account.created_at),
        "migrated_at": iso(account.migrated_at) if account.migrated_at else None,
        "migration_requested_at": (
            iso(account.migration_requested_at) if account.migration_requested_at else None
        ),
        "migration_requested_by": account.migration_requested_by,
    }


# ---- the account list's cursor ----------------------------------------------------------------------


def list_cursor(account_id: str) -> str:
    """The cursor of the page that follows `account_id` (accounts are listed by id)."""
    return base64.urlsafe_b64encode(account_id.encode()).decode().rstrip("=")


def listed_after(cursor: str) -> str:
    """The account id a cursor continues after; a cursor this API did not write is refused (422)."""
    try:
        account_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        account_id = ""
    if not re.fullmatch(ACCOUNT_ID_PATTERN, account_id):
        raise InvalidRequest("The cursor is not one this API returned.", {"cursor": "invalid"})
    return account_id
