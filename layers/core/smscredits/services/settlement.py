"""A message after its send: Twilio's status callbacks post, void or refund its hold, and the sweeper voids a
hold nothing ended."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from smscredits.domain.account import Hold
from smscredits.domain.delivery import (
    CHARGED_FINAL_STATUSES,
    RETURNED_STATUSES,
    rank,
    recorded_status,
    settled_by,
)
from smscredits.domain.errors import HoldEnded, MalformedProviderEvent, NotFound, SidMismatch
from smscredits.observability import count, logger

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger, Statements

# A hold changes at most once to posted or voided, four times in progress, once to refunded: a callback
# that found it moved this many times under it is a bug, not contention.
SETTLE_ATTEMPTS = 8


class _HoldMoved(Exception):
    """Another write changed the hold between our read and our conditional write: decide again."""


def settle_status(
    ledger: Ledger,
    *,
    account_id: str,
    message_id: str,
    status: str,
    sid: str | None,
    error_code: str | None,
    try_number: int | None = None,
) -> str:
    """Apply a provider status callback; returns what happened (posted, voided, refunded, status recorded,
    unchanged). Only moves a message forward: a repeat, a late status or anything after a final status
    changes nothing. A MessageSid other than the one recorded for the message is refused (sid_mismatch);
    the first SID seen is recorded with the callback's write. `try_number` (from the callback URL) names the
    try of the message the status is for: an earlier try's status is settled on its own (_earlier_try).

    pending + charged status → post; pending + failed → void; posted + failed → refund (Twilio does not
    charge a failed message) unless a final status was recorded first. Every write is conditional on the
    hold as it was read, so racing callbacks settle one way; the loser reads again and decides again.
    """
    if not sid:
        raise MalformedProviderEvent("The callback has no MessageSid.", {"MessageSid": "missing"})
    provider = {
        k: v for k, v in {"sid": sid, "provider_status": status, "error_code": error_code}.items() if v
    }
    for _ in range(SETTLE_ATTEMPTS):
        hold = ledger.get_hold(account_id, message_id)
        if try_number is not None and try_number != hold.tries:
            return _earlier_try(ledger, hold, try_number, status, sid)
        try:
            return _settle(ledger, hold, status, sid, provider)
        except (_HoldMoved, HoldEnded):
            continue
    raise RuntimeError(f"Message {message_id} kept changing under its status callback.")


def _settle(ledger: Ledger, hold: Hold, status: str, sid: str, provider: Mapping[str, Any]) -> str:
    recorded_sid = hold.provider.get("sid")
    if recorded_sid and recorded_sid != sid:
        logger.warning(
            "twilio callback refused: its MessageSid is not the message's",
            extra={
                "message_id": hold.message_id,
                "account_id": hold.account_id,
                "sid": sid,
                "recorded": recorded_sid,
            },
        )
        count("TwilioSidMismatch")
        raise SidMismatch("The callback's MessageSid is not this message's.", {"message_id": hold.message_id})
    if rank(status) <= rank(recorded_status(hold.provider)):
        return "unchanged"  # a repeat, a late status, or anything after a final one
    if hold.status == "voided" and status in CHARGED_FINAL_STATUSES:
        return _charge_late(ledger, hold, status, sid, provider)
    if hold.status not in ("pending", "posted"):
        return "unchanged"
    if hold.status == "pending":
        returned = status in RETURNED_STATUSES
        ended = ledger.void(hold, provider, sid=sid) if returned else ledger.post(hold, provider, sid=sid)
        _require_ours(ended, status, sid)
        return "voided" if returned else "posted"
    if status in RETURNED_STATUSES:
        refunded, applied = ledger.refund(hold, provider)
        _require_ours(refunded, status, sid)
        if applied:
            count("CreditsRefunded", hold.credits)
        return "refunded"
    if not ledger.record_delivery(hold, status, sid=sid, settled=settled_by(status)):
        raise _HoldMoved()
    return "status recorded"  # delivery news only; no credit moves


def _charge_late(ledger: Ledger, hold: Hold, status: str, sid: str, provider: Mapping[str, Any]) -> str:
    """Twilio billed a message whose credits we had returned (swept, or voided on a busy answer): charge it
    again. Alarmed: the validity period should make it impossible for a swept hold."""
    charged, applied = ledger.charge_late(hold, provider, sid=sid)
    _require_ours(charged, status, sid)
    if applied:
        logger.error(
            "ALERT a voided message was reported charged: its credits were taken again",
            extra={"message_id": hold.message_id, "account_id": hold.account_id, "status": status},
        )
    return "charged late"


def _earlier_try(ledger: Ledger, hold: Hold, try_number: int, status: str, sid: str) -> str:
    """A status for an earlier try of the message: Twilio answered that try 429/5xx, so it was voided and the
    message held again, yet a 5xx does not prove it was not sent. A charged final status means Twilio billed it:
    it is charged once, beside the try that replaced it. Anything else changes nothing (its credits came back
    when it was voided). A try the message never had, or the SID of the try that replaced it, is refused like
    another message's SID."""
    if try_number > hold.tries or try_number < 1 or sid == hold.provider.get("sid"):
        count("TwilioSidMismatch")
        raise SidMismatch("The callback's try and MessageSid do not match.", {"message_id": hold.message_id})
    if status not in CHARGED_FINAL_STATUSES:
        return "unchanged"
    charged_sid, applied = ledger.charge_earlier_try(hold, try_number, sid=sid)
    if charged_sid != sid:
        count("TwilioSidMismatch")
        raise SidMismatch("The callback's MessageSid is not this try's.", {"message_id": hold.message_id})
    if not applied:
        return "unchanged"
    logger.error(
        "ALERT an earlier try Twilio answered as busy was sent after all: charged beside the try that followed",
        extra={"message_id": hold.message_id, "account_id": hold.account_id, "try": try_number},
    )
    return "charged late"


def _require_ours(hold: Hold, status: str, sid: str) -> None:
    """An ending write that found the hold already ended returns it as it is: unless it is ours (a repeat),
    the hold moved under us."""
    if hold.provider.get("provider_status") != status or hold.provider.get("sid") != sid:
        raise _HoldMoved()


def sweep_stale_holds(ledger: Ledger, statements: Statements) -> dict[str, int]:
    """Void every hold still pending past its grace period (its send crashed or its callback never came)."""
    counts = {"voided": 0, "already_ended": 0}
    for account_id, message_id in list(statements.stale_holds(ledger.clock())):
        try:
            hold = ledger.get_hold(account_id, message_id)
            if hold.status != "pending":
                counts["already_ended"] += 1
                continue
            ledger.void(hold, {"provider_status": "no_callback", "result": "swept"})
            counts["voided"] += 1
        except (HoldEnded, NotFound):
            counts["already_ended"] += 1
    return counts
