"""The OpenAPI 3.1 document, generated from the route table and the pydantic models (model_json_schema).

Built on the first GET /v1/openapi.json and kept for the life of the process: no function pays for it at
import, and the one that serves it pays once (docs/performance.md has the measurement)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from smscredits.api.http import Auth, Route

TITLE = "SMS credits API"
VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
NO_TOKEN = (Auth.PUBLIC, Auth.SIGNED)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    """Every refusal and error: the one shape api/http.py's error map writes."""

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
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(route: Route, refs: Mapping[Any, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__}
    parameters = [
        *_parameters(route.params, "path"),
        *_parameters(route.query, "query"),
        *_headers(route),
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        schema = refs[(route.body, "validation")]
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    elif route.payload is not None:
        schema = refs[(route.payload, "validation")]
        operation["requestBody"] = {"required": True, "content": {route.payload_type: {"schema": schema}}}
    success: dict[str, Any] = {"description": route.description}
    if route.response is not None:
        success["content"] = {"application/json": {"schema": refs[(route.response, "serialization")]}}
    elif route.response_type != "application/json":
        success["content"] = {route.response_type: {"schema": {"type": "string"}}}
    error = {
        "description": "A refusal or an error",
        "content": {"application/json": {"schema": refs[(ErrorResponse, "serialization")]}},
    }
    operation["responses"] = {str(route.status): success, "default": error}
    if route.auth in NO_TOKEN:
        operation["security"] = []
    return operation


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
    return headers
