"""Domain errors: each carries the public error code, HTTP status and details of docs/product.md §9-10."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal the caller can act on; mapped once to `{"error": {code, message, details}}`."""

    code = "invalid_request"
    status = 422

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class InvalidRequest(DomainError):
    code = "invalid_request"
    status = 422


class BillingAnchorInFuture(InvalidRequest):
    """A billing anchor after today: refused rather than read as a day of this month (docs/billing-rules.md)."""

    code = "billing_anchor_in_future"


class MalformedRequest(DomainError):
    """The request could not be read at all: bytes that are not UTF-8, JSON nested beyond reason."""

    code = "invalid_request"
    status = 400


class InvalidSignature(DomainError):
    """A webhook whose signature does not verify its body (Stripe-Signature): nothing was read or written."""

    code = "invalid_signature"
    status = 400


class InvalidCallbackSignature(InvalidSignature):
    """A Twilio status callback whose X-Twilio-Signature does not match: refused as forbidden, as always."""

    code = "forbidden"
    status = 403


class MalformedProviderEvent(DomainError):
    """A correctly signed provider payload that is not shaped as the provider documents it; nothing written."""

    code = "invalid_request"
    status = 400


class InvalidNumber(DomainError):
    code = "invalid_number"


class UnsupportedRegion(DomainError):
    code = "unsupported_region"


class EmptyBody(DomainError):
    code = "empty_body"


class BodyTooLong(DomainError):
    code = "body_too_long"


class InsufficientCredits(DomainError):
    code = "insufficient_credits"
    status = 402


class IdempotencyKeyRequired(DomainError):
    code = "idempotency_key_required"
    status = 400


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class NotFound(DomainError):
    code = "not_found"
    status = 404


class LegacyAccount(DomainError):
    code = "legacy_account"
    status = 409


class NotLegacy(DomainError):
    """A migration asked for an account that already uses the segment model."""

    code = "not_legacy"
    status = 409


class Conflict(DomainError):
    code = "conflict"
    status = 409


class HoldEnded(Conflict):
    """Posting or voiding a hold that already ended the other way."""

    code = "hold_ended"


class SidMismatch(Conflict):
    """A status callback whose MessageSid is not the one recorded for its message."""

    code = "sid_mismatch"


class AccountExists(Conflict):
    code = "account_exists"


class HoldsPending(Conflict):
    """Migration waits until no message holds legacy credits (a void would return them to the old pool)."""

    code = "holds_pending"


class UpstreamUnavailable(DomainError):
    """A provider (Twilio, Stripe) could not be reached; nothing was charged."""

    code = "upstream_unavailable"
    status = 503


class Busy(UpstreamUnavailable):
    """Too much at once, before anything was reserved (the account's balance kept moving under us, or Twilio
    answered 429/5xx and the hold was voided): nothing is held or sent; the same Idempotency-Key may be used
    again after `retry_after` seconds (the `Retry-After` header)."""

    code = "busy"
    status = 429
    retry_after = 1


class UpstreamFailed(UpstreamUnavailable):
    """A provider answered with an error of its own (not the caller's); nothing was charged."""

    status = 502
