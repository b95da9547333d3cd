"""Stripe through the official SDK (v1 namespace): customers, Checkout Sessions, off-session PaymentIntents."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import stripe

from smscredits.domain.errors import (
    IdempotencyKeyReused,
    InvalidSignature,
    UpstreamFailed,
    UpstreamUnavailable,
)
from smscredits.observability import count, logger
from smscredits.schemas.stripe_webhook import parse_event
from smscredits.services.ports import ChargeOutcome

WEBHOOK_TOLERANCE_SECONDS = 300


class StripePayments:
    """The calls this service makes to Stripe; SDK errors become domain errors or charge outcomes."""

    def __init__(self, client: stripe.StripeClient, webhook_secret: str | Callable[[], str]) -> None:
        self.client = client
        # A callable is asked on every event: a rotated signing secret reaches a warm environment.
        self._webhook_secret = webhook_secret

    @property
    def webhook_secret(self) -> str:
        secret = self._webhook_secret
        return secret if isinstance(secret, str) else secret()

    def construct_event(self, payload: str, signature: str) -> dict[str, Any]:
        """The verified event as plain data. InvalidSignature when the Stripe-Signature does not verify the
        payload (counted: an alarm watches it); MalformedProviderEvent when what Stripe signed is not an event."""
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, self.webhook_secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as error:
            logger.warning("stripe webhook rejected", extra={"reason": type(error).__name__})
            count("WebhookSignatureRejected")
            count("StripeSignatureRejected")
            raise InvalidSignature("The Stripe-Signature does not verify this body.") from error
        return parse_event(payload)

    def create_customer(self, account_id: str) -> str:
        customer = _call(
            lambda: self.client.v1.customers.create(
                params={"metadata": {"account_id": account_id}},
                options={"idempotency_key": f"customer:{account_id}"},
            )
        )
        return str(customer.id)

    def create_checkout_session(self, params: Mapping[str, Any], idempotency_key: str) -> tuple[str, str]:
        """Returns (session id, url)."""
        session = _call(
            lambda: self.client.v1.checkout.sessions.create(
                params=dict(params),  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(session.id), str(session.url)

    def payment_method_of(self, payment_intent_id: str) -> str | None:
        intent = _call(lambda: self.client.v1.payment_intents.retrieve(payment_intent_id))
        method = intent.payment_method
        return method if isinstance(method, str) or method is None else str(method.id)

    def paid_intent(self, payment_intent_id: str) -> dict[str, Any]:
        """The PaymentIntent with its latest charge expanded: its card and its receipt (Charge.receipt_url,
        docs.stripe.com/api/charges/object) in one request."""
        intent = _call(
            lambda: self.client.v1.payment_intents.retrieve(
                payment_intent_id, params={"expand": ["latest_charge"]}
            )
        )
        return dict(intent.to_dict())

    def setup_payment_method(self, setup_intent_id: str) -> str | None:
        intent = _call(lambda: self.client.v1.setup_intents.retrieve(setup_intent_id))
        method = intent.payment_method
        return method if isinstance(method, str) or method is None else str(method.id)

    def charge_off_session(
        self,
        *,
        amount_cents: int,
        customer: str,
        payment_method: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> ChargeOutcome:
        try:
            intent = self.client.v1.payment_intents.create(
                params={
                    "amount": amount_cents,
                    "currency": "usd",
                    "customer": customer,
                    "payment_method": payment_method,
                    "off_session": True,
                    "confirm": True,
                    "metadata": dict(metadata),
                    "expand": [
                        "latest_charge"
                    ],  # its receipt, with the answer (domain/orders.receipt_url_of)
                    "description": f"Auto-recharge {metadata.get('packs')} x {metadata.get('region')} SMS packs",
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as error:
            code = error.code or (error.error.decline_code if error.error else None)
            failed = error.error.payment_intent if error.error else None
            outcome: Literal["declined", "authentication_required"] = (
                "authentication_required" if code == "authentication_required" else "declined"
            )
            return ChargeOutcome(outcome, failed.to_dict() if failed else None, code, error.user_message)
        except stripe.InvalidRequestError as error:
            # The saved card can no longer be charged (detached, expired customer...): Stripe charged
            # nothing, so it counts as a decline and climbs the same ladder towards switching off.
            return ChargeOutcome("declined", None, error.code or "invalid_request", error.user_message)
        except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
            logger.warning("stripe charge outcome unknown", extra={"error": type(error).__name__})
            return ChargeOutcome("pending", None, type(error).__name__, str(error))
        data = intent.to_dict()
        if data.get("status") == "succeeded":
            return ChargeOutcome("succeeded", data)
        if data.get("status") == "requires_action":
            return ChargeOutcome("authentication_required", data, "authentication_required", None)
        if data.get("status") == "requires_payment_method":
            return ChargeOutcome("declined", data, "card_declined", None)
        return ChargeOutcome("pending", data, data.get("status"), None)

    def find_recharge_intent(self, recharge_id: str, payment_intent_id: str | None) -> dict[str, Any] | None:
        """Retrieved by id when known; else Stripe's search by metadata, which is eventually consistent (new
        objects are searchable within about a minute: docs.stripe.com/search#data-freshness) — a claim is
        retried only after its lease (CLAIM_LEASE_SECONDS, longer than that) ran out."""
        expand = ["latest_charge"]  # its receipt, should it be settled now
        if payment_intent_id:
            intent = _call(
                lambda: self.client.v1.payment_intents.retrieve(payment_intent_id, params={"expand": expand})
            )
            return dict(intent.to_dict())
        quoted = recharge_id.replace("\\", "\\\\").replace("'", "\\'")
        found = _call(
            lambda: self.client.v1.payment_intents.search(
                params={
                    "query": f"metadata['recharge_id']:'{quoted}'",
                    "limit": 10,
                    "expand": [f"data.{field}" for field in expand],
                }
            )
        )
        intents = [intent.to_dict() for intent in found.data]
        # One recharge id, one idempotency key: normally one PaymentIntent. Should Stripe hold several (a key
        # it forgot before), the one that succeeded is what must be settled; any other is left to support.
        intents.sort(key=lambda intent: (intent.get("status") != "succeeded", intent.get("created") or 0))
        return dict(intents[0]) if intents else None


def _call[R](request: Callable[[], R]) -> R:
    """Run one Stripe request; the caller's mistakes stay 4xx, Stripe's become 502/503."""
    try:
        return request()
    except stripe.IdempotencyError as error:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request.", {"provider": "stripe"}
        ) from error
    except stripe.APIConnectionError as error:
        raise UpstreamUnavailable(
            "Stripe could not be reached; nothing was charged. Try again.", {"provider": "stripe"}
        ) from error
    except stripe.StripeError as error:
        logger.error("stripe request failed", extra={"error": type(error).__name__, "code": error.code})
        raise UpstreamFailed(
            "Stripe refused the request; nothing was charged. Try again later.",
            {"provider": "stripe", "stripe_code": error.code},
        ) from error


def make_client(
    secret_key: str, *, api_base: str | None, timeout: float, http_client: Any = None
) -> stripe.StripeClient:
    """One client per process; requests time out well below the function's timeout."""
    return stripe.StripeClient(
        secret_key,
        http_client=http_client or stripe.RequestsClient(timeout=timeout),
        base_addresses={"api": api_base} if api_base else {},
        max_network_retries=1,
    )
