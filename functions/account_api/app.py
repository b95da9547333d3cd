"""Account API function: balance, quotes, messages, statements, packs, auto-recharge, support routes, OpenAPI."""

from __future__ import annotations

from typing import Any

from smscredits.api import account_routes, admin_routes, dashboard_routes, docs_routes, packs_routes
from smscredits.api.http import Api
from smscredits.observability import instrument

app = Api(
    account_routes.router,
    admin_routes.router,
    docs_routes.router,
    dashboard_routes.router,
    packs_routes.router,
)


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
