"""GET /v1/openapi.json (generated from every router of the service) and /v1/docs, the API reference: Swagger UI
served from the files vendored in the layer (static/swagger-ui/SOURCE.md), never from a CDN."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from pydantic import StrictStr

from smscredits.api.http import Auth, Request, Response, Router
from smscredits.domain.errors import NotFound
from smscredits.schemas.base import Request as RequestModel

router = Router()

SWAGGER_UI_VERSION = "5.35.0"

# The reference runs only its own origin's scripts: no inline script, no eval, no other origin. Swagger UI
# styles some elements inline and draws its icons as data: images.
HEADERS = {
    "Cache-Control": "public, max-age=300",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>SMS credits API reference</title>
<link rel="stylesheet" href="/v1/docs/swagger-ui.css?v={SWAGGER_UI_VERSION}">
<style>body{{margin:0;font:16px/1.5 system-ui,sans-serif}}
.intro{{max-width:1460px;margin:0 auto;padding:1rem 20px 0}}.intro h1{{font-size:1.4rem;margin:0 0 .5rem}}
.intro code{{background:#f3f3f3;padding:0 .3em}}</style></head>
<body><div class="intro"><h1>SMS credits API v1</h1>
<p>The machine-readable contract: <a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI 3.1). Authenticate with
<code>Authorization: Bearer &lt;JWT&gt;</code> (Authorize, below, to try a route); sends and purchases need an
<code>Idempotency-Key</code> header. Every error answers <code>{{"error": {{"code", "message", "details"}}}}</code>.</p>
<noscript><p>The interactive reference needs JavaScript; the document above has every route and shape.</p></noscript>
</div>
<main id="swagger-ui"></main>
<script src="/v1/docs/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"></script>
<script src="/v1/docs/docs.js?v={SWAGGER_UI_VERSION}"></script>
</body></html>"""

# The page's start-up script, a file of its own so the policy needs no 'unsafe-inline' for scripts.
DOCS_SCRIPT = """window.ui = SwaggerUIBundle({
  url: '/v1/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  docExpansion: 'list',
  defaultModelsExpandDepth: 0,
  defaultModelExpandDepth: 3,
  defaultModelRendering: 'example',
  displayRequestDuration: true,
  validatorUrl: null,
});
"""

# name -> (file under static/, media type); a .gz file is sent as stored to a browser that accepts gzip.
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js.gz", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui/swagger-ui.css.gz", "text/css; charset=utf-8"),
}
ASSET_HEADERS = {
    # The page asks for ?v=<version>, so a day of caching never serves a stale Swagger UI for long.
    "Cache-Control": "public, max-age=86400",
    "X-Content-Type-Options": "nosniff",
    "Vary": "Accept-Encoding",
}


class DocsAssetParams(RequestModel):
    asset: StrictStr


@cache
def openapi_document() -> str:
    """Built from every router of the service on first use, so it describes the whole API whichever function
    serves it. The routers import no provider SDK at module level, so this stays cheap."""
    from smscredits.api import (
        account_routes,
        admin_routes,
        batch_routes,
        openapi,
        packs_routes,
        send_routes,
        stripe_routes,
        webhook_routes,
    )

    routers = (
        account_routes.router,
        send_routes.router,
        batch_routes.router,
        admin_routes.router,
        webhook_routes.router,
        packs_routes.router,
        packs_routes.checkout_router,
        stripe_routes.router,
        router,
    )
    return json.dumps(openapi.build(route for r in routers for route in r.routes))


@cache
def _compressed(path: str) -> bytes:
    """Read once per container from the package data that ships in the layer."""
    return resources.files("smscredits.api").joinpath("static", path).read_bytes()


@router.get("/v1/openapi.json", auth=Auth.PUBLIC, summary="This document", in_schema=False)
def openapi_json(request: Request) -> Response:
    return Response(200, openapi_document())


@router.get("/v1/docs", auth=Auth.PUBLIC, summary="The API reference (Swagger UI)", in_schema=False)
def docs(request: Request) -> Response:
    return Response(200, DOCS_PAGE, content_type="text/html; charset=utf-8", headers=HEADERS)


@router.get(
    "/v1/docs/{asset}",
    auth=Auth.PUBLIC,
    params=DocsAssetParams,
    summary="The reference page's script and styles",
    in_schema=False,
)
def docs_asset(request: Request, params: DocsAssetParams) -> Response:
    if params.asset == "docs.js":
        return Response(
            200, DOCS_SCRIPT, content_type="text/javascript; charset=utf-8", headers=ASSET_HEADERS
        )
    if params.asset not in ASSETS:
        raise NotFound(f"No such file: {params.asset}.", {"asset": params.asset})
    path, media_type = ASSETS[params.asset]
    stored = _compressed(path)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(
            200, stored, content_type=media_type, headers={**ASSET_HEADERS, "Content-Encoding": "gzip"}
        )
    import gzip  # only for a client that cannot take the stored bytes: not on the function's cold start

    return Response(
        200, gzip.decompress(stored).decode("utf-8"), content_type=media_type, headers=ASSET_HEADERS
    )
