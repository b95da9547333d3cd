"""The OpenAPI 3.1 document, generated from the route table and the pydantic models (model_json_schema).

Built on the first GET /v1/openapi.json and kept for the life of the process: no function pays for it at
import, and the one that serves it pays once (docs/performance.md has the measurement)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from smscredits.api.http import Auth, Route
from smscredits.domain.account import ACCOUNT_ID_PATTERN

TITLE = "SMS credits API"
VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
NO_TOKEN = (Auth.PUBLIC, Auth.SIGNED)

# (path prefix, tag): the first prefix that matches groups an operation; the reference shows tags in this order.
TAGS = (
    ("/v1/messages", "Messages"),
    ("/v1/batches", "Batches"),
    ("/v1/balance", "Balance and statement"),
    ("/v1/ledger", "Balance and statement"),
    ("/v1/migration-request", "Balance and statement"),
    ("/v1/packs", "Packs and auto-recharge"),
    ("/v1/auto-recharge", "Packs and auto-recharge"),
    ("/v1/admin/", "Support"),
    ("/webhooks/", "Webhooks"),
)
TAG_DESCRIPTIONS = {
    "Messages": "Quote and send SMS. One credit per segment: 160 GSM-7 characters (70 when any character is "
    "outside GSM-7, such as an emoji) for a one-segment message, 153 / 67 per part of a longer one.",
    "Batches": "Up to 10,000 messages with one reservation: a quote checks every entry, the batch is reserved "
    "all or nothing and sent at a paced rate; what is not sent, or fails, comes back at the next settlement.",
    "Balance and statement": "Included credits (any region, reset monthly; unused ones lapse) and each "
    "region's purchased credits (that region only, never expire); the ledger of every movement; a legacy "
    "account's request that support migrate it.",
    "Packs and auto-recharge": "The price table, Stripe Checkout for packs of 100 credits of one region, and "
    "automatic top-ups from the saved card.",
    "Support": "Support staff only: a token with the admin scope.",
    "Webhooks": "Called by Stripe and Twilio, verified by their signatures; not for API clients.",
}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    """Every refusal and error: the one shape api/http.py's error map writes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "insufficient_credits",
                        "message": "This message needs 2 credits; the pools that can pay for it hold 1.",
                        "details": {"needed": 2, "region": "NZ", "pools": {"included": 1, "purchased:NZ": 0}},
                    }
                }
            ]
        }
    )

    error: ErrorBody


def build(routes: Iterable[Route]) -> dict[str, Any]:
    documented = [route for route in routes if route.in_schema]
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for route in documented:
        for model in (route.body, route.payload):
            if model is not None:
                wanted.append((model, "validation"))
        if route.response is not None:
            wanted.append((route.response, "serialization"))
    refs, definitions = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in documented:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "The public contract of the SMS credits service (docs/product.md §10). Every error "
            'answers `{"error": {"code", "message", "details"}}`.',
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": name, "description": TAG_DESCRIPTIONS[name]}
            for name in dict.fromkeys(t for _, t in TAGS)
        ],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(route: Route, refs: Mapping[Any, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__}
    tag = next((tag for prefix, tag in TAGS if route.path.startswith(prefix)), None)
    if tag is not None:
        operation["tags"] = [tag]
    parameters = [
        *_parameters(route.params, "path"),
        *_parameters(route.query, "query"),
        *_headers(route),
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema = refs[(route.body, "validation")]
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": _media(schema, route.body)},
        }
    elif route.payload is not None:
        schema = refs[(route.payload, "validation")]
        operation["requestBody"] = {"required": True, "content": {route.payload_type: {"schema": schema}}}
    success: dict[str, Any] = {"description": route.description}
    if route.response is not None:
        schema = refs[(route.response, "serialization")]
        success["content"] = {"application/json": _media(schema, route.response)}
    elif route.response_type != "application/json":
        success["content"] = {route.response_type: {"schema": {"type": "string"}}}
    error = {
        "description": "A refusal or an error",
        "content": {"application/json": _media(refs[(ErrorResponse, "serialization")], ErrorResponse)},
    }
    operation["responses"] = {str(route.status): success, "default": error}
    if route.auth in NO_TOKEN:
        operation["security"] = []
    return operation


def _media(schema: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The schema, with the model's first example as the media type's example (what reference pages show)."""
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if isinstance(examples, list) and examples:
        return {"schema": schema, "example": examples[0]}
    return {"schema": schema}


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": where, "required": where == "path" or name in required, "schema": field}
        for name, field in schema.get("properties", {}).items()
    ]


def _headers(route: Route) -> list[dict[str, Any]]:
    headers = []
    if route.idempotency_key is not None:
        key = {"type": "string", "minLength": 1, "maxLength": 255}
        headers.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": route.idempotency_key == "required",
                "schema": key,
                "description": "The same key and body give the same answer, with no second effect.",
            }
        )
    if route.signature_header is not None:
        headers.append(
            {"name": route.signature_header, "in": "header", "required": True, "schema": {"type": "string"}}
        )
    if route.auth is Auth.ACCOUNT:
        headers.append(
            {
                "name": "X-Account-Id",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": ACCOUNT_ID_PATTERN},
                "description": "Required with a `service` token: the account it acts for (400 "
                "account_header_required without it). Ignored with a user's token, which acts for its own.",
            }
        )
    return headers
