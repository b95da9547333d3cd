"""Stripe's API as the stand-in speaks it: the form encoding of parameters, the error shape, and idempotent
requests (an Idempotency-Key replays the first answer; the same key with other parameters is refused)."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.wrappers import Request, Response


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back into objects: a[b][0][c]=v → {"a": {"b": [{"c": "v"}]}}."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    decoded = _lists(root)
    assert isinstance(decoded, dict)
    return decoded


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


class StripeError(Exception):
    """Answered as Stripe's error shape: {"error": {"type", "message", ...}}."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def invalid(message: str, param: str | None = None, code: str = "parameter_invalid") -> StripeError:
    return StripeError(
        400, {"type": "invalid_request_error", "code": code, "message": message, "param": param}
    )


def missing(kind: str, identifier: str, param: str = "id") -> StripeError:
    return StripeError(
        404 if param == "id" else 400,
        {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such {kind}: '{identifier}'",
            "param": param,
        },
    )


def json_response(
    body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    sent = {"Request-Id": new_id("req_"), **(headers or {})}
    return Response(json.dumps(body), status, sent, content_type="application/json")


class IdempotentApi:
    """Authenticate, replay by Idempotency-Key, then run the endpoint; errors take Stripe's shape."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._replies: dict[str, tuple[str, int, str]] = {}  # idempotency key → (request, status, body)

    def answer(self, request: Request, run: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not key.startswith("sk_test_"):
            error = {"type": "invalid_request_error", "message": "Invalid API Key provided (test keys only)."}
            return json_response({"error": error}, 401)
        # A GET's parameters (expand[]) come in the query string, a POST's in the form.
        params = decode_form([*request.args.items(multi=True), *request.form.items(multi=True)])
        idempotency_key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        fingerprint = json.dumps([request.path, params], sort_keys=True)
        with self._lock:
            if idempotency_key and idempotency_key in self._replies:
                first, status, body = self._replies[idempotency_key]
                if first != fingerprint:
                    error = {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with. Try using a key other than '{idempotency_key}'.",
                    }
                    return json_response({"error": error}, 400)
                return Response(
                    body, status, {"Idempotent-Replayed": "true"}, content_type="application/json"
                )
            try:
                status, answer = 200, run(params)
            except StripeError as failed:
                status, answer = failed.status, {"error": failed.error}
            body = json.dumps(answer)
            # Stripe keeps the first answer for a key, errors included, unless the request never ran (400s).
            if idempotency_key and status != 400:
                self._replies[idempotency_key] = (fingerprint, status, body)
        return Response(body, status, {"Request-Id": new_id("req_")}, content_type="application/json")
