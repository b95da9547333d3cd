"""Build a resolver for a set of routers, with auth helpers and the single error → HTTP mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter, Router
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from smscredits.domain.errors import DomainError, Forbidden, Unauthorized
from smscredits.observability import logger
from smscredits.settings import get_settings

API_TITLE = "SMS credits API"
API_VERSION = "1.0.0"


def error_response(
    status: int, code: str, message: str, details: Mapping[str, Any] | None = None
) -> Response[Any]:
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return Response(status_code=status, content_type="application/json", body=json.dumps(body, default=str))


def _validation_details(error: RequestValidationError) -> tuple[int, dict[str, Any]]:
    problems = []
    status = 422
    for item in error.errors():
        if item.get("type") == "json_invalid":
            status = 400
        problems.append(
            {
                "location": ".".join(str(part) for part in item.get("loc", ())),
                "problem": str(item.get("msg", "invalid")),
                "type": str(item.get("type", "invalid")),
            }
        )
    return status, {"errors": problems[:20]}


def build_app(*routers: Router) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    for router in routers:
        app.include_router(router)

    @app.exception_handler(DomainError)
    def domain_error(error: DomainError) -> Response[Any]:
        return error_response(error.status, error.code, error.message, error.details)

    @app.exception_handler(RequestValidationError)
    def invalid(error: RequestValidationError) -> Response[Any]:
        status, details = _validation_details(error)
        return error_response(status, "invalid_request", "The request is not valid.", details)

    @app.not_found
    def not_found(_: Exception) -> Response[Any]:
        return error_response(404, "not_found", "No such route.")

    @app.exception_handler(Exception)
    def unexpected(error: Exception) -> Response[Any]:
        # Content-type and similar refusals raised inside Powertools are the client's doing: 4xx.
        if type(error).__name__ == "RequestUnsupportedContentType":
            return error_response(415, "invalid_request", "Send the body as application/json.")
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side; nothing was charged.")

    return app


# ---- who is calling ---------------------------------------------------------------------------------


def _authorizer(router: BaseRouter) -> Mapping[str, Any]:
    context = router.current_event.raw_event.get("requestContext") or {}
    return ((context.get("authorizer") or {}).get("jwt")) or {}


def claims(router: BaseRouter) -> Mapping[str, Any]:
    found = _authorizer(router).get("claims")
    return found if isinstance(found, Mapping) else {}


def caller_account(router: BaseRouter) -> str:
    """The account id from the verified token; the path or body never choose the account."""
    account_id = claims(router).get(get_settings().account_id_claim)
    if not isinstance(account_id, str) or not account_id:
        raise Unauthorized("A valid token with an account claim is required.")
    return account_id


def caller_actor(router: BaseRouter) -> str:
    subject = claims(router).get("sub")
    return str(subject) if subject else "unknown"


def require_admin(router: BaseRouter) -> str:
    """Support routes need the `admin` scope; returns the actor for the audit trail."""
    token = claims(router)
    if not token:
        raise Unauthorized("A valid token is required.")
    scopes = set(str(token.get("scope", "")).split())
    scopes.update(str(s) for s in _authorizer(router).get("scopes") or [])
    if "admin" not in scopes:
        raise Forbidden("This route is for support staff (admin scope).")
    return caller_actor(router)


def idempotency_key(router: BaseRouter) -> str | None:
    value = router.current_event.headers.get("idempotency-key")
    return value.strip() if isinstance(value, str) and value.strip() else None
