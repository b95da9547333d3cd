"""Reading untrusted bodies: strict UTF-8, JSON with a bounded nesting depth, refusals as 400 invalid_request."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from smscredits.domain.errors import DomainError

# Our request bodies nest three levels (auto-recharge regions); Stripe's events about six. Anything deeper
# is not a request we can act on, and Python's json parser raises RecursionError near 1,000 levels.
MAX_JSON_DEPTH = 32


def body_text(body: Any, *, base64_encoded: bool, refuse: type[DomainError]) -> str:
    """An API Gateway event's body as text: base64-decoded when flagged, then strict UTF-8.

    A text body that cannot be UTF-8 (a lone surrogate, as from CESU-8 bytes) is refused like bad bytes."""
    if body is None or body == "":
        return ""
    if not isinstance(body, str):
        raise refuse("The request body is not text.", {"body": "unreadable"})
    if base64_encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise refuse("The request body is not valid base64.", {"body": "unreadable"}) from error
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise refuse(
                "The request body is not valid UTF-8.", {"body": "not UTF-8", "byte": error.start}
            ) from error
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as error:
        raise refuse(
            "The request body is not valid UTF-8.", {"body": "not UTF-8", "character": error.start}
        ) from error
    return body


def parse_json(text: str, *, refuse: type[DomainError]) -> Any:
    """json.loads, refusing invalid JSON (with its position, as `details.errors`) and deep nesting."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        problem = {"location": f"body.{error.pos}", "problem": "JSON decode error", "type": "json_invalid"}
        raise refuse("The request is not valid.", {"errors": [problem]}) from error
    except RecursionError as error:
        raise refuse(_too_deep(), {"body": "nested too deeply", "max_depth": MAX_JSON_DEPTH}) from error
    if not _within_depth(value, MAX_JSON_DEPTH):
        raise refuse(_too_deep(), {"body": "nested too deeply", "max_depth": MAX_JSON_DEPTH})
    return value


def _too_deep() -> str:
    return f"The JSON body nests more than {MAX_JSON_DEPTH} levels."


def _within_depth(value: Any, limit: int) -> bool:
    """Walks with a stack, not recursion, so a deep value cannot exhaust the interpreter's recursion limit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True
