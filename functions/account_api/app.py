"""Account API function: balance, quotes, messages, statements, support routes, OpenAPI."""

from __future__ import annotations

from typing import Any

from smscredits.api import account_routes, admin_routes, docs_routes
from smscredits.api.app import build_app
from smscredits.observability import instrument

app = build_app(account_routes.router, admin_routes.router, docs_routes.router)


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
