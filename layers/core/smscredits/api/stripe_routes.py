"""POST /webhooks/stripe: Stripe's signed events buy packs, settle recharges and claw back refunds."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from smscredits import runtime
from smscredits.api.app import error_response
from smscredits.observability import count, logger
from smscredits.schemas.billing import WebhookResponse
from smscredits.services import stripe_events

router = APIGatewayHttpRouter()


@router.post("/webhooks/stripe", summary="Stripe webhook (Stripe-Signature over the raw body)")
def stripe_webhook() -> Response[Any]:
    import stripe  # the webhook function's SDK; loaded on this route only

    event = router.current_event
    payload = event.decoded_body or ""  # HTTP APIs may base64-encode the body; Stripe signed the raw bytes
    signature = event.headers.get("stripe-signature") or ""
    try:
        verified = runtime.payments().construct_event(payload, signature)
    except (stripe.SignatureVerificationError, ValueError) as error:
        logger.warning("stripe webhook rejected", extra={"reason": type(error).__name__})
        count("WebhookSignatureRejected")
        count("StripeSignatureRejected")
        return error_response(400, "invalid_signature", "The Stripe-Signature does not verify this body.")
    try:
        outcome = stripe_events.handle_event(runtime.store(), runtime.payments, verified)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        # Signed by Stripe but not shaped as its API documents: nothing was written (every movement is one
        # transaction, reached only after the fields were read). 400 makes Stripe retry and shows it in the
        # dashboard's delivery log; an ALERT makes an operator look.
        logger.error("ALERT stripe event not understood", extra={"reason": type(error).__name__})
        return error_response(400, "invalid_request", "The event is not shaped as Stripe documents it.")
    return Response(
        status_code=200,
        content_type="application/json",
        body=WebhookResponse(received=True, outcome=outcome),
    )
