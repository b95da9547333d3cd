"""A Stripe Billing subscription as the ledger keeps it on the account, and which of two states of it is newer.

Stripe delivers events late, twice and out of order, so a state is kept only if it is newer than the one kept:
a later subscription (its `created`) replaces an earlier one (a reactivation); within one subscription the later
event (its `created`) wins, and at the same second a cancellation wins (it is final)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, NamedTuple

# Stripe statuses under which the subscription's plan is in force (past_due: Stripe is still retrying the payment).
IN_FORCE = frozenset({"active", "trialing", "past_due"})


class Subscription(NamedTuple):
    subscription_id: str
    customer_id: str
    status: str  # Stripe's status
    price_id: str | None
    plan: str | None  # None: the price is not in PLAN_PRICES (recorded and alarmed, never guessed)
    anchor: date  # billing_cycle_anchor's day (UTC)
    period_end: date  # the end of the period paid for
    ends_at: date | None  # when the allowance ends (cancel_at_period_end or deleted): the period's end
    created: int  # the subscription's creation (unix seconds)
    event_at: int  # the event's creation (unix seconds)

    @property
    def order(self) -> tuple[int, int, bool]:
        return (self.created, self.event_at, self.status == "canceled")

    def newer_than(self, kept: Subscription | None) -> bool:
        """Whether this state replaces `kept`: a later key, or the same key with other content (same second)."""
        if kept is None:
            return True
        if self.order != kept.order:
            return self.order > kept.order
        return self != kept and kept.status != "canceled"

    def in_force(self) -> bool:
        return self.status in IN_FORCE

    def allowance_ended(self, period_start: date) -> bool:
        """Whether a period starting on `period_start` is past the end of this subscription's allowance."""
        return self.ends_at is not None and period_start >= self.ends_at

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._asdict(),
            "anchor": self.anchor.isoformat(),
            "period_end": self.period_end.isoformat(),
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Subscription:
        return cls(
            subscription_id=str(raw["subscription_id"]),
            customer_id=str(raw["customer_id"]),
            status=str(raw["status"]),
            price_id=raw.get("price_id"),
            plan=raw.get("plan"),
            anchor=date.fromisoformat(raw["anchor"]),
            period_end=date.fromisoformat(raw["period_end"]),
            ends_at=date.fromisoformat(raw["ends_at"]) if raw.get("ends_at") else None,
            created=int(raw["created"]),
            event_at=int(raw["event_at"]),
        )
