"""Our DynamoDB value codec against boto3's TypeSerializer/TypeDeserializer (the oracle it replaces)."""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from smscredits.adapters.dynamo.values import from_item, from_value, to_item, to_value

LIMIT = 10**38 - 1  # DynamoDB keeps 38 significant digits
integers = st.integers(-LIMIT, LIMIT)
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**20), max_value=10**20)
scalars = st.one_of(st.none(), st.booleans(), integers, decimals, st.text(max_size=20))
sets = st.one_of(
    st.frozensets(st.text(max_size=5), min_size=1, max_size=4),
    st.frozensets(integers, min_size=1, max_size=4),
)
values = st.recursive(
    st.one_of(scalars, sets),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
items = st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6)


def plain(value: Any) -> Any:
    """What from_item promises: integral numbers as int, everything else as boto3 gives it."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {plain(v) for v in value}
    return value


def same_set_order(serialized: Any) -> Any:
    """DynamoDB sets are unordered: compare their members sorted."""
    if isinstance(serialized, dict):
        return {k: sorted(v) if k in ("SS", "NS") else same_set_order(v) for k, v in serialized.items()}
    if isinstance(serialized, list):
        return [same_set_order(v) for v in serialized]
    return serialized


@settings(max_examples=300, deadline=None)
@given(items)
def test_items_serialise_exactly_as_boto3_would(item):
    boto3_item = {k: TypeSerializer().serialize(v) for k, v in item.items() if v is not None}
    assert same_set_order(to_item(item)) == same_set_order(boto3_item)


@settings(max_examples=300, deadline=None)
@given(items)
def test_items_come_back_as_boto3_reads_them_with_integers_as_int(item):
    stored = to_item(item)
    ours = from_item(stored)
    assert ours == {k: plain(TypeDeserializer().deserialize(v)) for k, v in stored.items()}
    assert ours == {k: plain(v) for k, v in item.items() if v is not None}


def test_credits_and_cents_are_int_never_decimal():
    back = from_item(to_item({"credits": 200, "cents": 1240, "ratio": Decimal("1.5"), "nested": {"n": 3}}))
    assert back == {"credits": 200, "cents": 1240, "ratio": Decimal("1.5"), "nested": {"n": 3}}
    assert type(back["credits"]) is int and type(back["nested"]["n"]) is int
    assert from_value({"N": "1E+2"}) == 100 and type(from_value({"N": "1E+2"})) is int


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (1.5, TypeError),  # money is never a float
        (Decimal("NaN"), TypeError),
        (Decimal("Infinity"), TypeError),
        (10**38, decimal.Rounded),  # 39 digits: DynamoDB would round it
        (Decimal("1E+130"), decimal.Overflow),
        (set(), TypeError),
        ({"a", 1}, TypeError),
        (object(), TypeError),
    ],
)
def test_values_dynamodb_cannot_hold_exactly_are_refused(value, error):
    with pytest.raises(error):
        to_value(value)


def test_bytes_and_none_inside_maps():
    assert to_value({"b": b"\x00\xff", "n": None}) == {"M": {"b": {"B": b"\x00\xff"}, "n": {"NULL": True}}}
    assert from_value({"M": {"b": {"B": b"\x00\xff"}, "n": {"NULL": True}}}) == {"b": b"\x00\xff", "n": None}
    assert to_item({"skipped": None, "kept": 0}) == {"kept": {"N": "0"}}
