"""DynamoDB JSON: plain Python values to and from the attribute-value form the low-level client speaks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

# DynamoDB numbers: 38 significant digits, exponents -130..125. The same context as boto3's TypeSerializer,
# so a number DynamoDB would round is refused here instead of stored rounded.
NUMBER_CONTEXT = Context(Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow])

# Our own few lines instead of boto3.dynamodb.types, whose import loads all of boto3 (and s3transfer):
# about 0.1 s of every cold start (docs/performance.md). Same rules as boto3's TypeSerializer: no floats
# (money is never a float), numbers exact within DynamoDB's 38 digits; sets of one kind only.


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python → DynamoDB item; top-level None values are left out (DynamoDB has no absent attribute)."""
    return {key: to_value(value) for key, value in values.items() if value is not None}


def to_value(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):  # before int: bool is an int
        return {"BOOL": value}
    if isinstance(value, (int, Decimal)):
        return {"N": _number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (bytes, bytearray)):
        return {"B": bytes(value)}
    if isinstance(value, Set):
        return _set(value)
    if isinstance(value, Mapping):
        return {"M": {str(k): to_value(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [to_value(v) for v in value]}
    raise TypeError(
        f"cannot store {type(value).__name__} in DynamoDB (floats are refused: use int or Decimal)"
    )


def _number(value: int | Decimal) -> str:
    text = str(NUMBER_CONTEXT.create_decimal(value))
    if text in ("Infinity", "-Infinity", "NaN", "sNaN"):
        raise TypeError("DynamoDB numbers cannot be infinite or NaN")
    return text


def _set(values: Set[Any]) -> dict[str, Any]:
    if values and all(isinstance(v, str) for v in values):
        return {"SS": list(values)}
    if values and all(isinstance(v, (int, Decimal)) and not isinstance(v, bool) for v in values):
        return {"NS": [_number(v) for v in values]}
    if values and all(isinstance(v, (bytes, bytearray)) for v in values):
        return {"BS": [bytes(v) for v in values]}
    raise TypeError("DynamoDB sets hold strings, numbers or bytes of one kind, and are never empty")


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON → plain Python, with integers as int (credits and cents are never fractional)."""
    return {key: from_value(value) for key, value in item.items()}


def query_items(client: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item a Query matches, page after page, as plain values."""
    while True:
        page = client.query(**kwargs)
        yield from (from_item(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def from_value(value: Mapping[str, Any]) -> Any:
    ((kind, data),) = value.items()
    if kind == "S":
        return data
    if kind == "N":
        return _plain_number(data)
    if kind == "M":
        return {k: from_value(v) for k, v in data.items()}
    if kind == "L":
        return [from_value(v) for v in data]
    if kind == "BOOL":
        return bool(data)
    if kind == "NULL":
        return None
    if kind == "B":
        return bytes(data)
    if kind == "SS":
        return set(data)
    if kind == "NS":
        return {_plain_number(v) for v in data}
    if kind == "BS":
        return {bytes(v) for v in data}
    raise TypeError(f"unknown DynamoDB type {kind}")


def _plain_number(text: str) -> int | Decimal:
    number = NUMBER_CONTEXT.create_decimal(text)
    return int(number) if number == number.to_integral_value() else number
