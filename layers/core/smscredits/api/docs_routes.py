"""GET /v1/openapi.json (generated from every router of the service) and a plain docs page."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from smscredits.api.app import API_TITLE, API_VERSION

router = APIGatewayHttpRouter()

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>SMS credits API</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .3em}li{margin:.3rem 0}</style></head>
<body><h1>SMS credits API v1</h1>
<p>The machine-readable contract is <a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI 3).
Authenticate with <code>Authorization: Bearer &lt;JWT&gt;</code>; sends and purchases need an
<code>Idempotency-Key</code> header. Errors are <code>{"error": {"code", "message", "details"}}</code>.</p>
<ul id="routes"><li>Loading…</li></ul>
<script>
fetch('/v1/openapi.json').then(r => r.json()).then(doc => {
  const list = document.getElementById('routes'); list.innerHTML = '';
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) {
    const li = document.createElement('li');
    li.innerHTML = '<code>' + method.toUpperCase() + ' ' + path + '</code> — ';
    li.append(document.createTextNode(op.summary || ''));
    list.append(li);
  }
});
</script></body></html>"""


@cache
def openapi_document() -> str:
    """Built from every router of the service, so it describes the whole API whichever function serves it.
    The routers import no provider SDK at module level, so this stays cheap."""
    from smscredits.api import (
        account_routes,
        admin_routes,
        packs_routes,
        send_routes,
        stripe_routes,
        webhook_routes,
    )
    from smscredits.api.app import build_app

    app = build_app(
        account_routes.router,
        send_routes.router,
        admin_routes.router,
        webhook_routes.router,
        packs_routes.router,
        packs_routes.checkout_router,
        stripe_routes.router,
        router,
    )
    return app.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description="The public contract of the SMS credits service (docs/product.md §10).",
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},  # type: ignore[dict-item]
        security=[{"bearer": []}],
    )


@router.get("/v1/openapi.json", summary="This document", include_in_schema=False)
def openapi() -> Response[Any]:
    return Response(status_code=200, content_type="application/json", body=json.loads(openapi_document()))


@router.get("/v1/docs", summary="A readable list of the routes", include_in_schema=False)
def docs() -> Response[str]:
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=DOCS_PAGE)
