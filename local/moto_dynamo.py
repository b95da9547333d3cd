"""Moto's DynamoDB, made fit to stand in for the real thing under concurrency, and tables from template.yaml.

Two moto gaps matter here (see docs/research/engineering-notes.md §0): its server takes no lock around
DynamoDB operations, and a failed TransactWriteItems rolls back by restoring a deep copy of every
table it touched - which is O(table size) and, under concurrency, silently undoes writes that other
requests committed in between. Real DynamoDB gives per-request atomicity; the patch below gives moto
the same (one lock per backend call, item-level rollback). It adds no guarantee that our code relies
on beyond that: conditions still decide every outcome.

A third gap is speed: moto's Query sorts the whole table before filtering it (and sorts the matches
again afterwards), so every partition read costs O(table log table). Inside a Query the patch hands
moto the partition's items only (base table) or the table unsorted (index); the answers do not change.

What DynamoDB adds under concurrency beyond per-request atomicity (latency, TransactionConflict,
partition throughput) is local.dynamo_fidelity, installed here and switched on with its `configure`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from local.template import table_definitions

_LOCK = threading.RLock()
_PATCHED = False
_query_scope = threading.local()  # (table, hash key or None) while a Query runs


class _NoTableCopy:
    """Stands in for `copy` inside moto's transact_write_items: tables are not copied (we snapshot items)."""

    @staticmethod
    def deepcopy(value: Any) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value)


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    wrapper.__name__ = method.__name__
    return wrapper


def patch_moto() -> None:
    """Idempotently patch moto's DynamoDB backend (in-process mock and server alike)."""
    global _PATCHED
    if _PATCHED:
        return
    import moto.dynamodb.models as models

    backend = models.DynamoDBBackend
    original_transact = backend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        snapshots = []
        for entry in transact_items:
            op = next(iter(entry.values()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op["Key"] if "Key" in op else _key_of(table, op["Item"])
            hash_value, range_value = _key_values(table, key)
            snapshots.append(
                (table, hash_value, range_value, copy.deepcopy(_get(table, hash_value, range_value)))
            )
        models.copy = _NoTableCopy  # type: ignore[assignment]
        try:
            original_transact(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(snapshots):
                _restore(table, hash_value, range_value, item)
            raise
        finally:
            models.copy = copy

    backend.transact_write_items = _locked(transact_write_items)  # type: ignore[method-assign]
    _patch_query()
    for name in (
        "get_item",
        "put_item",
        "update_item",
        "delete_item",
        "query",
        "scan",
        "batch_get_item",
        "transact_get_items",
    ):
        if hasattr(backend, name):
            setattr(backend, name, _locked(getattr(backend, name)))
    from local import dynamo_fidelity

    dynamo_fidelity.install(_LOCK)
    _PATCHED = True


def _key_of(table: Any, item: dict[str, Any]) -> dict[str, Any]:
    key = {table.hash_key_attr: item[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = item[table.range_key_attr]
    return key


def _key_values(table: Any, key: dict[str, Any]) -> tuple[Any, Any]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    return hash_value, range_value


def _get(table: Any, hash_value: Any, range_value: Any) -> Any:
    bucket = table.items.get(hash_value)
    if bucket is None:
        return None
    return bucket.get(range_value) if range_value is not None else bucket


def _restore(table: Any, hash_value: Any, range_value: Any, item: Any) -> None:
    if range_value is None:
        if item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item
        return
    bucket = table.items[hash_value]
    if item is None:
        bucket.pop(range_value, None)
        if not bucket:
            table.items.pop(hash_value, None)
    else:
        bucket[range_value] = item


def moto_client(endpoint_url: str, config: Any = None) -> Any:
    """A DynamoDB client for a moto server. Moto accepts any credentials; fixed ones keep a real AWS profile
    (and its region) out of it."""
    from botocore.session import get_session  # the client the functions create too (adapters/aws.py)

    return get_session().create_client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def create_tables(client: Any) -> dict[str, str]:
    """Create every table template.yaml declares; returns logical id → table name."""
    names = {}
    existing = set(client.list_tables().get("TableNames", []))
    for logical_id, args in table_definitions().items():
        if args["TableName"] not in existing:
            client.create_table(**args)
        names[logical_id] = args["TableName"]
    return names


def _patch_query() -> None:
    from moto.dynamodb.models.table import Table

    original_query, original_all_items = Table.query, Table.all_items

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[7] if len(args) > 7 else None)
        hash_key = kwargs.get("hash_key", args[0] if args else None)
        _query_scope.value = (self, None if index_name else hash_key)
        try:
            return original_query(self, *args, **kwargs)
        finally:
            _query_scope.value = None

    def all_items(self: Any) -> Any:
        scope = getattr(_query_scope, "value", None)
        if scope is None or scope[0] is not self:
            return original_all_items(self)
        hash_key = scope[1]
        if hash_key is None:  # an index query: moto filters and sorts the matches itself
            return [item for bucket in self.items.values() for item in _bucket_items(self, bucket)]
        bucket = self.items.get(hash_key)
        return _bucket_items(self, bucket) if bucket is not None else []

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


def _bucket_items(table: Any, bucket: Any) -> list[Any]:
    return list(bucket.values()) if table.range_key_attr else [bucket]
