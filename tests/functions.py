"""Test helpers: load a function's handler the way the local gateway does, build events from events/."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_function(name: str) -> ModuleType:
    """functions/<name>/app.py as a module of its own (every function's module is called app)."""
    module_name = f"fn_{name}_app"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class Context:
    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


def event(name: str, **changes: Any) -> dict[str, Any]:
    """A fixture event with changes: body (dict → JSON), headers (merged), claims, method, path, query,
    path_params."""
    base = json.loads((EVENTS / f"{name}.json").read_text())
    result = copy.deepcopy(base)
    if "body" in changes:
        body = changes.pop("body")
        result["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    if "headers" in changes:
        result["headers"].update(changes.pop("headers"))
    if "claims" in changes:
        claims = changes.pop("claims")
        if claims is None:
            result["requestContext"].pop("authorizer", None)
        else:
            result["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    if "path_params" in changes:
        result["pathParameters"] = changes.pop("path_params")
    if "method" in changes:
        method = changes.pop("method")
        result["requestContext"]["http"]["method"] = method
        result["routeKey"] = f"{method} {result['rawPath']}"
    if "path" in changes:
        path = changes.pop("path")
        result["rawPath"] = path
        result["requestContext"]["http"]["path"] = path
    if "query" in changes:
        query: dict[str, str] = changes.pop("query")
        result["queryStringParameters"] = query
        result["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    assert not changes, f"unknown changes {changes}"
    return result


def call(function: str, fixture: str, **changes: Any) -> tuple[int, Any]:
    response = load_function(function).lambda_handler(event(fixture, **changes), Context())
    body = response.get("body", "")
    content_type = {k.lower(): v for k, v in (response.get("headers") or {}).items()}.get("content-type", "")
    return response["statusCode"], json.loads(body) if "json" in content_type and body else body


def user(account_id: str = "acct-1") -> dict[str, str]:
    return {"sub": f"user-{account_id}", "account_id": account_id, "scope": ""}


def admin() -> dict[str, str]:
    return {"sub": "support-1", "account_id": "support", "scope": "admin"}
