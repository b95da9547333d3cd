"""Stripe webhook function: verify the signature, grant paid packs, settle recharges, claw back refunds."""

from __future__ import annotations

from typing import Any

from smscredits.api import stripe_routes
from smscredits.api.http import Api
from smscredits.observability import instrument

app = Api(stripe_routes.router)


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
