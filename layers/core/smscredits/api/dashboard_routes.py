"""GET /dashboard: the account owner's single-page dashboard, which talks only to the public API."""

from __future__ import annotations

from functools import cache
from importlib import resources

from smscredits.api.http import Auth, Request, Response, Router

router = Router()

# The page holds no data and no secret: it is the same for everyone, so browsers may cache it briefly.
# Its own scripts are inline, so the policy allows inline code but no other origin, frames or plugins.
HEADERS = {
    "Cache-Control": "public, max-age=300",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@cache
def dashboard_html() -> str:
    """Read once per container from the package data that ships in the layer."""
    return resources.files("smscredits.api").joinpath("static/dashboard.html").read_text(encoding="utf-8")


@router.get("/dashboard", auth=Auth.PUBLIC, summary="The account dashboard (a web page)", in_schema=False)
def dashboard(request: Request) -> Response:
    return Response(200, dashboard_html(), content_type="text/html; charset=utf-8", headers=HEADERS)
