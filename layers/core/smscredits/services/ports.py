"""The ports the services depend on: how a message leaves (Sender), how money comes in (Payments)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What the provider said to `messages.create`.

    accepted: it took the message (sid known). rejected: it certainly did not send (4xx). unknown: we
    cannot tell (timeout after the request left, 5xx) - never re-sent; the callback or the sweeper decides.
    """

    result: Literal["accepted", "rejected", "unknown"]
    sid: str | None = None
    status: str | None = None
    error_code: int | None = None
    error_message: str | None = None


class Sender(Protocol):
    def send(self, *, to: str, body: str, status_callback: str) -> SendOutcome: ...


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    """What the payment provider said to an off-session charge.

    succeeded: paid (payment_intent set). pending: accepted but not final, or we cannot tell (timeout,
    5xx) - the webhook or a retry with the same idempotency key settles it. declined /
    authentication_required: certainly not paid.
    """

    result: Literal["succeeded", "pending", "declined", "authentication_required"]
    payment_intent: Mapping[str, Any] | None = None
    code: str | None = None
    message: str | None = None


class Payments(Protocol):
    def create_customer(self, account_id: str) -> str: ...

    def create_checkout_session(self, params: Mapping[str, Any], idempotency_key: str) -> tuple[str, str]: ...

    def payment_method_of(self, payment_intent_id: str) -> str | None: ...

    def charge_off_session(
        self,
        *,
        amount_cents: int,
        customer: str,
        payment_method: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> ChargeOutcome: ...
