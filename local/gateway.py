"""The local HTTP API: template.yaml's routes and JWT authorizer in front of the functions, as payload 2.0 events."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from local import token
from local.template import ROOT, Route, function_properties, functions, routes
from local.workers import FunctionError, FunctionSpec, Workers

log = logging.getLogger("local.gateway")

# Lambda's limit for a synchronous invocation's payload (6 MB): a bigger request never reaches a function.
MAX_BODY_BYTES = 6 * 1024 * 1024
LOCAL_ACCOUNT = "123456789012"


def function_specs() -> dict[str, FunctionSpec]:
    return {name: FunctionSpec.from_properties(name, function_properties(name), ROOT) for name in functions()}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The service's error shape, so a caller cannot tell the gateway's refusals from the functions'."""
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return Response(json.dumps(body), status, headers=dict(headers or {}), content_type="application/json")


# ---- routes -----------------------------------------------------------------------------------------


class MethodNotAllowed(Exception):
    def __init__(self, allowed: list[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


@dataclass(frozen=True)
class Match:
    route: Route
    path_parameters: dict[str, str]


class RouteTable:
    """Matches `METHOD /path` against the template's routes, the most specific path first, as API Gateway does."""

    def __init__(self, declared: Iterable[Route]) -> None:
        # Literal segments outrank {param}, which outranks {greedy+}, position by position.
        self.routes = sorted(declared, key=lambda r: [_rank(s) for s in _segments(r.path)])

    def match(self, method: str, raw_path: str) -> Match | None:
        """The route for this request; None if no path matches; MethodNotAllowed if only the method is wrong."""
        segments = [unquote(s) for s in _segments(raw_path)]
        allowed = []
        for route in self.routes:
            parameters = _match_path(_segments(route.path), segments)
            if parameters is None:
                continue
            if route.method in (method, "ANY"):
                return Match(route, parameters)
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(sorted(set(allowed)))
        return None


def _segments(path: str) -> list[str]:
    return path.split("/")[1:]


def _rank(segment: str) -> int:
    if segment.startswith("{") and segment.endswith("+}"):
        return 2
    return 1 if segment.startswith("{") else 0


def _match_path(template: list[str], segments: list[str]) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, part in enumerate(template):
        if _rank(part) == 2:
            rest = segments[index:]
            if not rest or not all(rest):
                return None
            parameters[part[1:-2]] = "/".join(rest)
            return parameters
        if index >= len(segments):
            return None
        if _rank(part) == 1:
            if not segments[index]:
                return None
            parameters[part[1:-1]] = segments[index]
        elif part != segments[index]:
            return None
    return parameters if len(template) == len(segments) else None


# ---- the gateway ------------------------------------------------------------------------------------


class Gateway:
    """A WSGI app: route, authorize, build the event, invoke, turn the answer into an HTTP response.

    Each invocation runs in a worker process of its function's pool (local.workers), one at a time per
    worker as in a Lambda execution environment, so requests run concurrently as they do on AWS."""

    def __init__(self, workers: Workers | None = None) -> None:
        self.routes = RouteTable(routes())
        self.workers = workers or Workers(function_specs())

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Run one invocation; raises FunctionError if the function raised, timed out, was throttled or died."""
        return self.workers.invoke(function, event, event.get("routeKey") or event.get("detail-type") or "")

    def workers_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """GET /__local/workers: each worker's function, pid and what it serves (tests kill one by pid).
        POST /__local/workers?function=F&count=N: start F's workers until its pool holds N (benchmarks)."""
        method = environ.get("REQUEST_METHOD")
        if method == "POST":
            args = Request(environ).args
            pool = self.workers.pools.get(args.get("function", ""))
            if pool is None or not args.get("count", "").isdigit():
                return error_response(
                    400, "invalid_request", "function (a template function) and count are required.", None
                )(environ, start_response)
            pool.fill(int(args["count"]))
        elif method != "GET":
            return Response("GET or POST only", 405, {"Allow": "GET, POST"})(environ, start_response)
        body = json.dumps({"limit": self.workers.limit, "workers": self.workers.describe()})
        return Response(body, 200, content_type="application/json")(environ, start_response)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        request = Request(environ)
        raw_path = urlsplit(environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.path).path
        response, function = self.respond(request, raw_path)
        log.info(
            "%s %s → %d %s(%.0f ms)",
            request.method,
            raw_path,
            response.status_code,
            f"{function} " if function else "",
            _ms(started),
        )
        return response(environ, start_response)

    def respond(self, request: Request, raw_path: str) -> tuple[Response, str | None]:
        try:
            match = self.routes.match(request.method, raw_path)
        except MethodNotAllowed as refused:
            allowed = ", ".join(refused.allowed)
            message = f"{request.method} is not allowed on {raw_path}; use {allowed}."
            return error_response(
                405, "invalid_request", message, {"allowed": refused.allowed}, {"Allow": allowed}
            ), None
        if match is None:
            return error_response(404, "not_found", f"No route for {request.method} {raw_path}."), None
        route = match.route
        claims: dict[str, Any] | None = None
        if route.authorized:
            claims = authorize(request.headers.get("Authorization"))
            if claims is None:
                message = "A valid bearer token is required."
                return error_response(
                    401, "unauthorized", message, None, {"WWW-Authenticate": "Bearer"}
                ), None
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _too_large(), None
        body = request.stream.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return _too_large(), None
        event = build_event(request, raw_path, match, body, claims)
        try:
            result = self.invoke(route.function, event)
        except FunctionError as failure:
            log.error("%s", failure)
            message = "The function failed; see the local mode's log."
            return error_response(500, "internal_error", message), route.function
        return to_response(result), route.function


def _too_large() -> Response:
    message = f"The request body is larger than {MAX_BODY_BYTES} bytes."
    return error_response(413, "invalid_request", message, {"limit_bytes": MAX_BODY_BYTES})


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


# ---- the JWT authorizer -----------------------------------------------------------------------------


def authorize(header: str | None) -> dict[str, Any] | None:
    """The verified token's claims, or None: what API Gateway's JWT authorizer decides before any function."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    try:
        return token.verify(value.strip())
    except jwt.InvalidTokenError as refused:
        log.info("token refused: %s", refused)
        return None


def _claim_text(value: Any) -> str:
    """API Gateway hands claims to the function as strings (arrays as `[a b]`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_claim_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


# ---- events and responses ---------------------------------------------------------------------------


def build_event(
    request: Request, raw_path: str, match: Match, body: bytes, claims: Mapping[str, Any] | None
) -> dict[str, Any]:
    """An API Gateway HTTP API payload format 2.0 event."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    cookies = [part.strip() for part in headers.pop("cookie", "").split(";") if part.strip()]
    raw_query = request.environ.get("QUERY_STRING", "")
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = datetime.now(UTC)
    domain = headers.get("host", "127.0.0.1")
    route_key = f"{match.route.method} {match.route.path}"
    context: dict[str, Any] = {
        "accountId": LOCAL_ACCOUNT,
        "apiId": "local",
        "domainName": domain,
        "domainPrefix": domain.split(".")[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "sourceIp": request.remote_addr or "127.0.0.1",
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if claims is not None:
        scopes = str(claims.get("scope", "")).split()
        context["authorizer"] = {
            "jwt": {"claims": {k: _claim_text(v) for k, v in claims.items()}, "scopes": scopes or None}
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def to_response(result: Any) -> Response:
    """A function's answer as API Gateway turns it into HTTP (payload 2.0, including its shortcut form)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        return Response(text, 200, content_type="application/json")
    headers = Headers()
    for name, value in (result.get("headers") or {}).items():
        headers.add(name, str(value))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            headers.add(name, str(value))
    for cookie in result.get("cookies") or []:
        headers.add("Set-Cookie", cookie)
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return Response(data, int(result["statusCode"]), headers=headers)
