"""Send function: POST /v1/messages. The only function that loads Twilio's SDK on its hot path."""

from __future__ import annotations

from typing import Any

from smscredits.api import send_routes
from smscredits.api.http import Api
from smscredits.observability import instrument

app = Api(send_routes.router)


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
