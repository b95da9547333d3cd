"""Checkout function: POST /v1/packs/checkout creates a Stripe Checkout Session."""

from __future__ import annotations

from typing import Any

from smscredits.api import packs_routes
from smscredits.api.http import Api
from smscredits.observability import instrument

app = Api(packs_routes.checkout_router)


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
