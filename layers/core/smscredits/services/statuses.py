"""A Twilio status as the callback route queues it and the status worker applies it: to a single send's hold
(services/settlement.py) or to a batch message's record (services/batches.py). One record, one mechanism."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from smscredits.domain.errors import MalformedProviderEvent
from smscredits.services.settlement import settle_status

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import BatchMessages, Ledger


def status_record(
    *,
    account_id: str | None,
    message_id: str | None,
    batch_id: str | None,
    index: int | None,
    status: str | None,
    sid: str | None,
    error_code: str | None,
    try_number: int | None = None,
) -> dict[str, Any]:
    """What a callback carries that its application needs: its message (a send's id, or a batch and an index
    into it, both under their account) and Twilio's status. MalformedProviderEvent when it names neither."""
    if not account_id or not status:
        raise MalformedProviderEvent("The callback lacks account_id or MessageStatus.")
    target: dict[str, Any]
    if batch_id is not None and index is not None:
        target = {"batch_id": batch_id, "index": index}
    elif message_id:
        target = {"message_id": message_id}
    else:
        raise MalformedProviderEvent("The callback names no message (message_id, or batch_id and index).")
    record = {"account_id": account_id, **target, "status": status, "sid": sid, "error_code": error_code}
    if try_number is not None:  # a single send's try (services/sending.py): absent on batches and older URLs
        record["try"] = try_number
    return record


def describe(record: Mapping[str, Any]) -> str:
    """The message a status record is about, for the log (a batch message as its API names it)."""
    if "batch_id" in record:
        return f"{record['batch_id']}:{record['index']}"
    return str(record.get("message_id"))


def apply_status(
    ledger: Ledger, batch_messages: Callable[[], BatchMessages], record: Mapping[str, Any]
) -> str:
    """Apply one status record exactly once (each path's conditional writes); returns what happened."""
    if "batch_id" in record:
        from smscredits.services import batches  # only a batch message's status loads it

        return batches.apply_callback(
            ledger,
            batch_messages(),
            account_id=str(record["account_id"]),
            batch_id=str(record["batch_id"]),
            index=int(record["index"]),
            status=str(record["status"]),
            sid=record.get("sid"),
        )
    return settle_status(
        ledger,
        account_id=record["account_id"],
        message_id=record["message_id"],
        status=record["status"],
        sid=record.get("sid"),
        error_code=record.get("error_code"),
        try_number=record.get("try"),
    )
