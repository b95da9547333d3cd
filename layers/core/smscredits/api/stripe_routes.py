"""POST /webhooks/stripe: Stripe's signed events buy packs, settle recharges, claw back refunds and follow
Stripe Billing's subscriptions."""

from __future__ import annotations

from smscredits import runtime
from smscredits.api.http import Auth, Request, Router
from smscredits.schemas.billing import WebhookResponse
from smscredits.schemas.stripe_webhook import StripeEvent
from smscredits.services import stripe_events
from smscredits.services.subscriptions import BillingPorts

router = Router()


@router.post(
    "/webhooks/stripe",
    auth=Auth.SIGNED,
    signature_header="Stripe-Signature",
    payload=StripeEvent,
    response=WebhookResponse,
    summary="Stripe webhook (Stripe-Signature over the raw body)",
)
def stripe_webhook(request: Request) -> WebhookResponse:
    # HTTP APIs may base64-encode the body; Stripe signed the raw bytes, which request.text decodes.
    ports = runtime.container()
    verified = ports.payments.construct_event(request.text, request.headers.get("stripe-signature") or "")
    billing = BillingPorts(ports.ledger, ports.customers, ports.settings.plan_prices)
    outcome = stripe_events.handle_event(
        stripe_events.StripePorts(ports.ledger, ports.payments, billing), verified
    )
    return WebhookResponse(received=True, outcome=outcome)
