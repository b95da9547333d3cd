"""Our HTTP layer over API Gateway payload 2.0 events: routes, request models, and the one error → HTTP map.

Each route is declared once (method, path in the template's `{param}` syntax, who may call it, its models);
`Api.resolve` matches the event, checks the caller, reads and validates the request, calls the route and turns
its answer, or any exception, into the Lambda proxy response. Routes hold no try/except: refusals are
`DomainError`s and map to their status and code here; anything else is our bug: 500, logged and counted
(`UnhandledError`, which an alarm watches)."""

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from enum import Enum
from functools import cached_property
from typing import Any, Literal, Required, TypedDict, Unpack
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ValidationError

from smscredits.domain.account import ACCOUNT_ID_PATTERN
from smscredits.domain.errors import Busy, DomainError, Forbidden, MalformedRequest, Unauthorized
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.observability import count, logger
from smscredits.schemas.decoding import body_text, parse_json
from smscredits.settings import get_settings

MAX_VALIDATION_ERRORS = 20
ACCOUNT_HEADER = "x-account-id"  # names the account a `service` token acts for on the account routes
SERVICE_SCOPE = "service"
ADMIN_SCOPE = "admin"


class Auth(Enum):
    # A JWT with the account claim: the account comes from the token, never the request. A token with the
    # `service` scope (the SaaS backend) names the account in the X-Account-Id header instead (docs/product.md §9).
    ACCOUNT = "account"
    ADMIN = "admin"  # a JWT with the `admin` scope (support staff)
    TOKEN = "token"  # any JWT the gateway's authorizer accepted; the route reads no claim (the price table)
    PUBLIC = "public"  # no token: the docs and the dashboard page
    SIGNED = "signed"  # no token: the route verifies the provider's signature over the raw body


# ---- refusals of the HTTP layer itself (the domain's own are in domain/errors.py) ---------------------


class RouteNotFound(DomainError):
    code = "not_found"
    status = 404


class MethodNotAllowed(DomainError):
    status = 405

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(f"{method} is not allowed here; use {', '.join(allowed)}.", {"allowed": allowed})
        self.allowed = allowed


class UnsupportedMediaType(DomainError):
    status = 415


class AccountHeaderRequired(DomainError):
    """A `service` token on an account route without X-Account-Id: it acts for no account of its own."""

    code = "account_header_required"
    status = 400


class AccountHeaderInvalid(DomainError):
    """X-Account-Id that cannot be an account id (the path parameter's pattern)."""

    code = "account_header_invalid"
    status = 400


class RequestInvalid(DomainError):
    """The request's path, query or body does not match its model (422), as pydantic describes it."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("The request is not valid.", {"errors": errors[:MAX_VALIDATION_ERRORS]})


# ---- requests and responses -------------------------------------------------------------------------


class Request:
    """What a route reads: the caller (as checked for its `auth`), headers, query and the body's text."""

    def __init__(
        self,
        event: Mapping[str, Any],
        path: str,
        path_parameters: dict[str, str],
        deadline: float | None = None,
    ) -> None:
        self.event = event
        # time.monotonic() at which the function is stopped (Lambda's remaining time); None when unknown
        self.deadline = deadline
        self.path = path
        self.path_parameters = path_parameters
        self.headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        self.query: dict[str, str] = dict(event.get("queryStringParameters") or {})
        self._account_id: str | None = None
        self._actor: str | None = None

    @property
    def authorizer(self) -> Mapping[str, Any]:
        context = self.event.get("requestContext") or {}
        return ((context.get("authorizer") or {}).get("jwt")) or {}

    @property
    def api_base_url(self) -> str | None:
        """The https address API Gateway received this request on: `requestContext.domainName`, which API
        Gateway sets to the name it served the request under (its execute-api name or a custom domain mapped to
        this API: a Host naming anything else never reaches this API), on the `$default` stage (no stage in
        the path). None for another stage or outside API Gateway. Settings.public_base_url_of says when it is
        used (docs/deploy.md argues why Twilio's signature stays safe)."""
        context = self.event.get("requestContext") or {}
        domain = context.get("domainName")
        if not isinstance(domain, str) or not domain or context.get("stage") != "$default":
            return None
        return f"https://{domain}"

    @property
    def claims(self) -> Mapping[str, Any]:
        found = self.authorizer.get("claims")
        return found if isinstance(found, Mapping) else {}

    @property
    def scopes(self) -> set[str]:
        """The verified token's scopes: its `scope` claim and what the authorizer lists."""
        found = set(str(self.claims.get("scope", "")).split())
        found.update(str(s) for s in self.authorizer.get("scopes") or [])
        return found

    def admit(self, auth: Auth) -> None:
        """Check the caller a route's `auth` asks for, from the claims of the token the JWT authorizer verified."""
        token = self.claims
        if auth is Auth.ACCOUNT:
            self._account_id = (
                self._service_account() if SERVICE_SCOPE in self.scopes else self._own_account()
            )
        elif auth is Auth.ADMIN:
            if not token:
                raise Unauthorized("A valid token is required.")
            if ADMIN_SCOPE not in self.scopes:
                raise Forbidden("This route is for support staff (admin scope).")
            self._actor = str(token.get("sub") or "unknown")

    def _own_account(self) -> str:
        """The account claim of a user's token; an X-Account-Id header is ignored (it names no one's account)."""
        account_id = self.claims.get(get_settings().account_id_claim)
        if not isinstance(account_id, str) or not account_id:
            raise Unauthorized("A valid token with an account claim is required.")
        return account_id

    def _service_account(self) -> str:
        """The account a `service` token acts for: the X-Account-Id header, required and shaped as an account
        id (whether the account exists is the route's 404, as for any token). The token's own account claim, if
        any, is not used. Logged with the token's subject, never the token."""
        account_id = self.headers.get(ACCOUNT_HEADER, "").strip()
        if not account_id:
            raise AccountHeaderRequired(
                "A service token names the account it acts for in the X-Account-Id header.",
                {"header": "X-Account-Id"},
            )
        if not re.fullmatch(ACCOUNT_ID_PATTERN, account_id):
            raise AccountHeaderInvalid(
                "X-Account-Id must be an account id (1-64 letters, digits, '-' or '_').",
                {"header": "X-Account-Id"},
            )
        logger.append_keys(acting_for=account_id, service_subject=str(self.claims.get("sub") or "unknown"))
        logger.info("service token acting for an account")
        return account_id

    @property
    def account_id(self) -> str:
        """The account of the verified token (routes with Auth.ACCOUNT)."""
        if self._account_id is None:
            raise RuntimeError("this route does not declare Auth.ACCOUNT")
        return self._account_id

    @property
    def actor(self) -> str:
        """The support user for the audit trail (routes with Auth.ADMIN)."""
        if self._actor is None:
            raise RuntimeError("this route does not declare Auth.ADMIN")
        return self._actor

    @property
    def subject(self) -> str:
        """Who made the request, for the record of an owner's request: the verified token's `sub` (a service
        token's own when it acts for an account)."""
        return str(self.claims.get("sub") or "unknown")

    @cached_property
    def text(self) -> str:
        """The body as sent: base64-decoded when API Gateway encoded it, strict UTF-8 (else 400)."""
        return body_text(
            self.event.get("body"),
            base64_encoded=bool(self.event.get("isBase64Encoded")),
            refuse=MalformedRequest,
        )

    def form(self) -> dict[str, str]:
        """An application/x-www-form-urlencoded body (a repeated name keeps its last value)."""
        return dict(parse_qsl(self.text, keep_blank_values=True))


class Response:
    """What a route answers when a model and its declared status are not enough (a status of its own, a
    non-JSON body, headers)."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: BaseModel | Mapping[str, Any] | str | bytes | None = None,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})

    def to_lambda(self) -> dict[str, Any]:
        """The payload 2.0 proxy response API Gateway turns into HTTP (bytes travel base64-encoded)."""
        headers = {"Content-Type": self.content_type, **self.headers}
        if isinstance(self.body, bytes):
            encoded = base64.b64encode(self.body).decode("ascii")
            return {"statusCode": self.status, "headers": headers, "body": encoded, "isBase64Encoded": True}
        if isinstance(self.body, BaseModel):
            text = self.body.model_dump_json()
        elif isinstance(self.body, str):
            text = self.body
        elif self.body is None:
            text = ""
        else:
            text = json.dumps(self.body, separators=(",", ":"), default=str)
        return {"statusCode": self.status, "headers": headers, "body": text, "isBase64Encoded": False}


# ---- routes -----------------------------------------------------------------------------------------

Handler = Callable[..., BaseModel | Response]


class RouteOptions(TypedDict, total=False):
    auth: Required[Auth]
    summary: Required[str]
    status: int  # of a model answer (a route returning a Response chooses its own)
    body: type[BaseModel]  # a JSON object validated by this model, passed as `body=`
    query: type[BaseModel]  # the query string, passed as `query=`
    params: type[BaseModel]  # the path parameters, passed as `params=`
    response: type[BaseModel]  # what a success answers (for the OpenAPI document)
    response_type: str  # what a success answers when it is not a JSON model (documented)
    idempotency_key: Literal["required", "optional"]  # the header, validated and passed as `key=`
    signature_header: str  # Auth.SIGNED: the header that carries the provider's signature (documented)
    payload: type[BaseModel]  # Auth.SIGNED: what the route reads from the raw body once verified (documented)
    payload_type: str  # the payload's media type
    description: str  # of the success response in the OpenAPI document
    in_schema: bool


class Route:
    """One declared route (its options are RouteOptions'). A plain class, not a dataclass: generating a
    dataclass's methods costs about 1 ms of every cold start (docs/performance.md)."""

    def __init__(self, method: str, path: str, handler: Handler, **options: Unpack[RouteOptions]) -> None:
        self.method = method
        self.path = path
        self.segments = tuple(path.split("/")[1:])
        self.handler = handler
        self.auth = options["auth"]
        self.summary = options["summary"]
        self.status = options.get("status", 200)
        self.body = options.get("body")
        self.query = options.get("query")
        self.params = options.get("params")
        self.response = options.get("response")
        self.response_type = options.get("response_type", "application/json")
        self.idempotency_key = options.get("idempotency_key")
        self.signature_header = options.get("signature_header")
        self.payload = options.get("payload")
        self.payload_type = options.get("payload_type", "application/json")
        self.description = options.get("description", "Success")
        self.in_schema = options.get("in_schema", True)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters if this route's path matches the (decoded) segments; a parameter is one
        non-empty segment, as in API Gateway."""
        if len(segments) != len(self.segments):
            return None
        parameters = {}
        for part, segment in zip(self.segments, segments, strict=True):
            if part.startswith("{"):
                if not segment:
                    return None
                parameters[part[1:-1]] = segment
            elif part != segment:
                return None
        return parameters


class Router:
    """The routes of one module; `Api` serves the routers of one function."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, path, handler, **options))
            return handler

        return register

    def get(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **options)

    def put(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **options)

    def patch(self, path: str, **options: Unpack[RouteOptions]) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **options)


class Api:
    """One function's routes: `resolve(event)` answers every event, errors included."""

    def __init__(self, *routers: Router) -> None:
        routes = [route for router in routers for route in router.routes]
        # Literal segments outrank {param}, position by position, as API Gateway matches.
        self.routes = sorted(routes, key=lambda r: [s.startswith("{") for s in r.segments])

    def resolve(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        deadline = None
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000
        try:
            response = self._dispatch(event, deadline)
        except Exception as error:
            response = error_response(error)
        return response.to_lambda()

    def _dispatch(self, event: Mapping[str, Any], deadline: float | None) -> Response:
        http = (event.get("requestContext") or {}).get("http") or {}
        method = str(http.get("method") or "").upper()
        path = str(event.get("rawPath") or http.get("path") or "/")
        route, parameters = self._match(method, path)
        request = Request(event, path, parameters, deadline)
        request.admit(route.auth)
        arguments: dict[str, Any] = _validated_arguments(route, request)
        if route.idempotency_key == "required":
            arguments["key"] = IdempotencyKey.require(request.headers.get("idempotency-key"))
        elif route.idempotency_key == "optional":
            arguments["key"] = IdempotencyKey.parse(request.headers.get("idempotency-key"))
        answer = route.handler(request, **arguments)
        return answer if isinstance(answer, Response) else Response(route.status, answer)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        segments = [unquote(segment) for segment in path.split("/")[1:]]
        allowed = []
        for route in self.routes:
            parameters = route.match(segments)
            if parameters is None:
                continue
            if route.method == method:
                return route, parameters
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(method, sorted(set(allowed)))
        raise RouteNotFound("No such route.")


def _validated_arguments(route: Route, request: Request) -> dict[str, BaseModel]:
    """Path, query and body through their models; every problem of the three reported together (422)."""
    inputs: list[tuple[str, type[BaseModel], Any]] = []
    if route.params is not None:
        inputs.append(("params", route.params, request.path_parameters))
    if route.query is not None:
        inputs.append(("query", route.query, request.query))
    problems: list[dict[str, Any]] = []
    if route.body is not None:
        body = _json_body(request)
        if body is None:  # no body, or JSON null
            problems.append({"location": "body", "problem": "Field required", "type": "missing"})
        else:
            inputs.append(("body", route.body, body))
    elif route.payload is None and route.method != "GET" and _unwanted_body(request):
        # A route that reads no body takes none, or `{}`: anything else is refused, never silently ignored.
        problems.append(
            {"location": "body", "problem": "This route takes no body", "type": "extra_forbidden"}
        )
    arguments: dict[str, BaseModel] = {}
    for name, model, value in inputs:
        try:
            arguments[name] = model.model_validate(value)
        except ValidationError as error:
            problems += _problems("path" if name == "params" else name, error)
    if problems:
        raise RequestInvalid(problems)
    return arguments


def _unwanted_body(request: Request) -> bool:
    """Whether a body sent to a route that reads none is more than nothing or `{}` (bytes that are not JSON
    are a 400 here already)."""
    return bool(request.text.strip()) and _json_body(request) != {}


def _json_body(request: Request) -> Any:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.")
    text = request.text
    return parse_json(text, refuse=MalformedRequest) if text.strip() else None


def _problems(location: str, error: ValidationError) -> list[dict[str, Any]]:
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        problems.append(
            {
                "location": ".".join(str(part) for part in (location, *item.get("loc", ()))),
                "problem": str(item.get("msg", "invalid")),
                "type": str(item.get("type", "invalid")),
            }
        )
    return problems


# ---- the one error → HTTP map -----------------------------------------------------------------------


def error_response(error: Exception) -> Response:
    """A refusal (DomainError, the HTTP layer's included) answers its status and code; anything else is a
    bug of ours: 500, logged with its traceback and counted as UnhandledError (alarmed in template.yaml)."""
    if isinstance(error, DomainError):
        status, code, message, details = error.status, error.code, error.message, error.details
    else:
        logger.exception("unhandled error")
        count("UnhandledError")
        status, code = 500, "internal_error"
        message, details = "Something went wrong on our side; nothing was charged.", {}
    headers = {"Allow": ", ".join(error.allowed)} if isinstance(error, MethodNotAllowed) else {}
    if isinstance(error, Busy):
        headers["Retry-After"] = str(error.retry_after)
    return Response(
        status, {"error": {"code": code, "message": message, "details": dict(details)}}, headers=headers
    )
