"""Helpers for tests of the Ledger port: a hold request, a paid pack, the refresh of the clock's period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from smscredits.domain.account import Account
from smscredits.domain.catalog import pack_price_cents
from smscredits.domain.errors import UpstreamUnavailable
from smscredits.domain.movements import HoldRequest
from smscredits.domain.orders import Order, Paid
from smscredits.domain.periods import period_containing, period_start_at
from smscredits.services.ports import Ledger
from tests.conftest import Clock

ACCT = "acct-1"


def hold_request(message_id: str, segments: int = 1, region: str = "AU") -> HoldRequest:
    return HoldRequest(
        message_id=message_id,
        segments=segments,
        region=region,
        request_hash=f"hash-{message_id}",
        message={"to": "+61491570156", "body": "hello", "region": region, "segments": segments},
    )


def pack_order(
    account_id: str = ACCT, *, region: str = "AU", packs: int = 1, order_id: str = "cs_1"
) -> Order:
    return Order(
        order_id=order_id,
        kind="checkout",
        account_id=account_id,
        region=region,
        packs=packs,
        amount_cents=pack_price_cents(region, packs),
        currency="usd",
        customer_id="cus_1",
        status="open",
    )


def buy(
    ledger: Ledger,
    account_id: str = ACCT,
    *,
    region: str = "AU",
    packs: int = 1,
    order_id: str = "cs_1",
    payment_intent: str = "pi_1",
    attempt_id: str | None = None,
) -> bool:
    """A paid pack of `region` (100 credits a pack) granted through its order, as Stripe's events grant it."""
    order = ledger.open_order(pack_order(account_id, region=region, packs=packs, order_id=order_id))
    return ledger.grant_purchase(Paid(order, payment_intent), source="test", attempt_id=attempt_id)


def refresh(ledger: Ledger, clock: Clock, account_id: str = ACCT, **options: Any) -> tuple[Account, bool]:
    """The refresh for the period that contains the clock's day (anchor: the 5th)."""
    start, next_start = period_containing(date(2026, 1, 5), clock.now.date())
    return ledger.refresh_allowance(
        account_id, period_start=start, next_refresh_at=period_start_at(next_start), **options
    )


def nonzero(pools: Any) -> dict[str, int]:
    return {pool: value for pool, value in dict(pools).items() if value}


def patiently[T](action: Callable[[], T]) -> T:
    """As a client or SQS retries a request the store refused as too busy (UpstreamUnavailable: nothing written)."""
    for _ in range(50):
        try:
            return action()
        except UpstreamUnavailable:
            continue
    raise AssertionError("never landed")
