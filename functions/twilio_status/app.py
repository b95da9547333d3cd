"""Twilio status callback function: verify the signature, settle the message's hold."""

from __future__ import annotations

from typing import Any

from smscredits.api import webhook_routes
from smscredits.api.http import Api
from smscredits.observability import instrument

app = Api(webhook_routes.router)


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
