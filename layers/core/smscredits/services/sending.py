"""Quote and send a message: validate, count, hold, hand to the provider, post or void; settle callbacks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from smscredits.adapters.dynamo import account_pk, hold_sk, to_value
from smscredits.adapters.ledger_store import HoldDraft, LedgerStore, Write, hold_from_item, provider_condition
from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold
from smscredits.domain.errors import (
    BodyTooLong,
    EmptyBody,
    HoldEnded,
    IdempotencyKeyReused,
    InsufficientCredits,
    MalformedRequest,
    NotFound,
    SidMismatch,
)
from smscredits.domain.regions import parse_recipient
from smscredits.domain.segments import SegmentCount, count_segments, gsm_replacement, replace_non_gsm
from smscredits.domain.text import has_visible, refuse_control_characters
from smscredits.observability import count, logger
from smscredits.services.ports import Sender

if TYPE_CHECKING:  # only the sweeper reads partitions; the send path's cold start skips the reader
    from smscredits.adapters.ledger_reader import LedgerReader

MAX_BODY_CHARACTERS = 1600


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    to: str
    region: str
    text: str  # what we count and what we send: trimmed, smart-encoded when the account asks
    count: SegmentCount


def prepare_message(to: str, body: str, *, smart_encoding: bool) -> PreparedMessage:
    """Validate, trim trailing whitespace (what we bill is what we send), find the region, count.

    A body with nothing visible is empty; control characters other than tab and line breaks are refused,
    never stripped, so that what we bill is what the caller asked to send."""
    if not has_visible(body):
        raise EmptyBody("The message body has nothing visible to send.", {"body": "nothing visible"})
    refuse_control_characters(body, "body")
    text = body.rstrip()
    if len(text) > MAX_BODY_CHARACTERS:
        raise BodyTooLong(
            f"The message body has {len(text)} characters; the limit is {MAX_BODY_CHARACTERS}.",
            {"characters": len(text), "limit": MAX_BODY_CHARACTERS},
        )
    number, region = parse_recipient(to)
    count = count_segments(text, smart_encoding=smart_encoding)
    if len(count.text) > MAX_BODY_CHARACTERS:  # smart encoding can lengthen a body (… → ...)
        raise BodyTooLong(
            f"After smart encoding the body has {len(count.text)} characters; the limit is {MAX_BODY_CHARACTERS}.",
            {"characters": len(count.text), "limit": MAX_BODY_CHARACTERS},
        )
    return PreparedMessage(number, region, count.text, count)


def _funding_out(funding: tuple[L.Funding, ...]) -> list[dict[str, Any]]:
    return [{"pool": f.pool, "credits": f.credits} for f in funding]


def quote(account: Account, to: str, body: str, legacy_rates: Mapping[str, int]) -> dict[str, Any]:
    """What a send would cost and take, now, without moving anything."""
    prepared = prepare_message(to, body, smart_encoding=account.smart_encoding)
    smart = count_segments(body.rstrip(), smart_encoding=True)
    credits = L.message_credits(account.credit_model, prepared.count.segments, prepared.region, legacy_rates)
    try:
        funding = L.funding_for(account.credit_model, account.pools, prepared.region, credits)
        affordable = True
    except InsufficientCredits:
        funding, affordable = (), False
    count = prepared.count
    return {
        "region": prepared.region,
        "encoding": count.encoding,
        "segments": count.segments,
        "credits": credits,
        "characters": count.characters,
        "non_gsm_characters": list(count.non_gsm_characters),
        "smart_encoding": {
            "encoding": smart.encoding,
            "segments": smart.segments,
            "applied": account.smart_encoding,
        },
        "funding": _funding_out(funding),
        "affordable": affordable,
        "units": count.units,
        "segment_capacity": count.segment_capacity,
        "last_segment_units": count.last_segment_units,
        "last_segment_units_left": count.last_segment_units_left,
        "replacements": [_replacement(char) for char in count.non_gsm_characters],
        "if_replaced": _if_replaced(account, prepared, legacy_rates),
    }


def _replacement(char: str) -> dict[str, str]:
    import unicodedata  # the quote alone names characters

    return {
        "character": char,
        "code_point": f"U+{ord(char):04X}",
        "name": unicodedata.name(char, ""),
        "replacement": gsm_replacement(char),
    }


def _if_replaced(
    account: Account, prepared: PreparedMessage, legacy_rates: Mapping[str, int]
) -> dict[str, Any] | None:
    """What the message would cost with every UCS-2 character replaced as the quote suggests; None when it
    is GSM-7 already or nothing visible would be left to send."""
    if not prepared.count.non_gsm_characters:
        return None
    text = replace_non_gsm(prepared.count).rstrip()  # trimmed as a send would trim it
    if not has_visible(text):
        return None
    count = count_segments(text)
    credits = L.message_credits(account.credit_model, count.segments, prepared.region, legacy_rates)
    return {"encoding": count.encoding, "segments": count.segments, "credits": credits}


def message_id_for(account_id: str, idempotency_key: str) -> str:
    """The message (and hold) id is derived from the caller's key (an IdempotencyKey the HTTP layer
    validated): the same key can only ever hold once."""
    digest = hashlib.sha256(f"{account_id}\n{idempotency_key}".encode()).hexdigest()
    return f"msg_{digest[:26]}"


def request_hash(to: str, body: str) -> str:
    return hashlib.sha256(json.dumps({"to": to, "body": body}, sort_keys=True).encode()).hexdigest()


def status_callback_url(base_url: str, hold: Hold) -> str:
    return f"{base_url}/webhooks/twilio/status?" + urlencode(
        {"account_id": hold.account_id, "message_id": hold.hold_id}
    )


def send_answer(hold: Hold, detail: str | None = None) -> dict[str, Any]:
    message = hold.message
    return {
        "message_id": hold.hold_id,
        "status": public_status(hold),
        "region": message["region"],
        "encoding": message["encoding"],
        "segments": int(message["segments"]),
        "credits": hold.credits,
        "funding": _funding_out(hold.funding),
        "detail": detail or hold.provider.get("error_message"),
    }


def public_status(hold: Hold) -> str:
    if hold.status == "pending":
        return "pending"
    if hold.status == "posted":
        return "sent"
    if hold.status == "refunded":
        return "failed"
    return "rejected" if hold.provider.get("result") == "rejected" else "failed"


def send_message(
    store: LedgerStore,
    sender: Sender,
    *,
    account_id: str,
    idempotency_key: str,
    to: str,
    body: str,
    callback_base_url: str,
    account: Account | None = None,
    recharge: Callable[[str, str, int], bool] | None = None,
    after_debit: Callable[[str, str], None] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send one message; returns (HTTP status, answer). The same key and body give the same answer.

    `recharge(account_id, region, needed)` is asked once when the pools cannot cover the message (auto-recharge);
    True means credits may have arrived and the reserve is tried again. `after_debit(account_id, region)` is
    called once the message keeps its credits (auto-recharge's threshold); its failures never change the answer."""
    message_id = message_id_for(account_id, idempotency_key)
    account = account or store.cached_account(account_id) or store.get_account(account_id)
    prepared = prepare_message(to, body, smart_encoding=account.smart_encoding)
    draft = HoldDraft(
        hold_id=message_id,
        segments=prepared.count.segments,
        region=prepared.region,
        request_hash=request_hash(to, body),
        message={
            "to": prepared.to,
            "body": prepared.text,
            "region": prepared.region,
            "encoding": prepared.count.encoding,
            "segments": prepared.count.segments,
        },
    )
    try:
        hold, created = store.reserve(account_id, draft)
    except InsufficientCredits as short:
        if recharge is None or not recharge(account_id, prepared.region, int(short.details.get("needed", 1))):
            raise
        hold, created = store.reserve(account_id, draft)
    if hold.request_hash != draft.request_hash:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request.", {"message_id": message_id}
        )
    if not created:
        return 202, send_answer(hold)  # a replay: the first request's outcome, no second send
    count("CreditsHeld", hold.credits)
    outcome = sender.send(
        to=prepared.to, body=prepared.text, status_callback=status_callback_url(callback_base_url, hold)
    )
    # The create answer's status is the message's first recorded Twilio status (what callbacks move on from).
    provider = {
        ("provider_status" if k == "status" else k): v for k, v in vars_of(outcome).items() if v is not None
    }
    if outcome.result == "rejected":
        voided = store.void(hold, provider)
        return 202, send_answer(voided, f"The provider refused the message: {outcome.error_message}")
    if outcome.result == "accepted":
        count("MessagesSent")
        count("SegmentsSent", prepared.count.segments)
        try:
            posted = store.post(hold, provider)
        except HoldEnded:
            # Its `failed` callback overtook us and already returned the credits: report that outcome.
            posted = store.get_hold(account_id, message_id)
        if posted.provider.get("sid") != outcome.sid:
            # A callback that overtook us recorded another SID: only a forged (yet signed) callback can. The
            # message is out, so the answer stands; the operator is told.
            logger.error(
                "ALERT a status callback recorded another SID than Twilio's answer",
                extra={"message_id": message_id, "sid": outcome.sid, "recorded": posted.provider.get("sid")},
            )
            count("TwilioSidMismatch")
        answer = send_answer(posted)
    else:
        # Unknown: it may have gone out. Never re-send; the status callback posts it, or the sweeper voids it.
        answer = send_answer(hold, "The provider did not confirm the message; its status will follow.")
    if after_debit is not None:
        try:
            after_debit(account_id, prepared.region)
        except Exception:  # the message is out and charged: a failed top-up must not make it an error
            logger.exception(
                "after-debit hook failed", extra={"account_id": account_id, "region": prepared.region}
            )
    return 202, answer


def vars_of(outcome: Any) -> dict[str, Any]:
    return {name: getattr(outcome, name) for name in outcome.__slots__}


# ---- status callbacks and the sweeper ----------------------------------------------------------------

# Twilio's statuses in the order they happen, then the final ones: a message's recorded status only moves
# forward, and once it is final nothing changes it (callbacks arrive late and out of order, PRODUCT §8).
_PROGRESS = {"accepted": 0, "queued": 1, "sending": 2, "sent": 3}
FINAL_STATUSES = frozenset({"delivered", "undelivered", "read", "failed", "canceled"})
# Twilio does not charge these, so the credits come back; `undelivered` stays charged (the carrier was tried).
RETURNED_STATUSES = frozenset({"failed", "canceled"})
_FINAL = len(_PROGRESS)
# A hold changes at most once to posted or voided, four times in progress, once to refunded: a callback
# that found it moved this many times under it is a bug, not contention.
_SETTLE_ATTEMPTS = 8


class _HoldMoved(Exception):
    """Another write changed the hold between our read and our conditional write: decide again."""


def _rank(status: Any) -> int:
    return _FINAL if status in FINAL_STATUSES else _PROGRESS.get(status, -1)


def recorded_status(hold: Hold) -> str | None:
    """Twilio's last status for the message (holds posted by older code kept the create answer's as `status`)."""
    status = hold.provider.get("provider_status") or hold.provider.get("status")
    return str(status) if status else None


def _settled_by(status: str) -> frozenset[str]:
    """The recorded statuses a write of `status` must not overwrite: the ones at or past it, and the final ones."""
    return FINAL_STATUSES | {known for known, rank in _PROGRESS.items() if rank >= _rank(status)}


def settle_status(
    store: LedgerStore,
    *,
    account_id: str,
    message_id: str,
    status: str,
    sid: str | None,
    error_code: str | None,
) -> str:
    """Apply a provider status callback; returns what happened (posted, voided, refunded, status recorded,
    unchanged). Only moves a message forward: a repeat, a late status or anything after a final status
    changes nothing. A MessageSid other than the one recorded for the message is refused (sid_mismatch);
    the first SID seen is recorded with the callback's write.

    pending + charged status → post; pending + failed → void; posted + failed → refund (Twilio does not
    charge a failed message) unless a final status was recorded first. Every write is conditional on the
    hold as it was read, so racing callbacks settle one way; the loser reads again and decides again.
    """
    if not sid:
        raise MalformedRequest("The callback has no MessageSid.", {"MessageSid": "missing"})
    provider = {
        k: v for k, v in {"sid": sid, "provider_status": status, "error_code": error_code}.items() if v
    }
    for _ in range(_SETTLE_ATTEMPTS):
        hold = store.get_hold(account_id, message_id)
        try:
            return _settle(store, hold, status, sid, provider)
        except (_HoldMoved, HoldEnded):
            continue
    raise RuntimeError(f"Message {message_id} kept changing under its status callback.")


def _settle(store: LedgerStore, hold: Hold, status: str, sid: str, provider: Mapping[str, Any]) -> str:
    recorded_sid = hold.provider.get("sid")
    if recorded_sid and recorded_sid != sid:
        logger.warning(
            "twilio callback refused: its MessageSid is not the message's",
            extra={
                "message_id": hold.hold_id,
                "account_id": hold.account_id,
                "sid": sid,
                "recorded": recorded_sid,
            },
        )
        count("TwilioSidMismatch")
        raise SidMismatch("The callback's MessageSid is not this message's.", {"message_id": hold.hold_id})
    if hold.status not in ("pending", "posted") or _rank(status) <= _rank(recorded_status(hold)):
        return "unchanged"
    if hold.status == "pending":
        returned = status in RETURNED_STATUSES
        ended = store.void(hold, provider, sid=sid) if returned else store.post(hold, provider, sid=sid)
        _require_ours(ended, status, sid)
        return "voided" if returned else "posted"
    if status in RETURNED_STATUSES:
        _require_ours(refund_hold(store, hold, provider), status, sid)
        return "refunded"
    if not store.record_provider_status(hold, status, sid=sid, settled=_settled_by(status)):
        raise _HoldMoved()
    return "status recorded"  # delivery news only; no credit moves


def _require_ours(hold: Hold, status: str, sid: str) -> None:
    """An ending write that found the hold already ended returns it as it is: unless it is ours (a repeat),
    the hold moved under us."""
    if hold.provider.get("provider_status") != status or hold.provider.get("sid") != sid:
        raise _HoldMoved()


def refund_hold(store: LedgerStore, hold: Hold, provider: Mapping[str, Any]) -> Hold:
    """Return a posted message's credits to the pools it came from (once; the hold's status guards it),
    provided the callback's SID is the message's and no final status was recorded meanwhile.

    Included credits from an earlier period lapse, as with a void."""
    provider_check, provider_values = provider_condition(provider.get("sid"), FINAL_STATUSES)

    def build(state: Account) -> Write:
        lapsed = hold.period_start != state.period_start
        plan = L.plan_void(state.pools, state.held + hold.credits, hold.funding, included_lapsed=lapsed)
        plan = L.Plan(plan.pools, state.held, tuple(_as_refund(e) for e in plan.entries))
        merged = {**dict(hold.provider), **dict(provider)}
        update = {
            "Update": {
                "TableName": store.table,
                "Key": {"pk": to_value(account_pk(hold.account_id)), "sk": to_value(hold_sk(hold.hold_id))},
                "UpdateExpression": "SET #status = :refunded, provider = :provider",
                "ConditionExpression": f"#status = :posted AND {provider_check}",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":refunded": to_value("refunded"),
                    ":posted": to_value("posted"),
                    ":provider": to_value(merged),
                    **provider_values,
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        return Write(plan, f"refund:{hold.hold_id}", {"message_id": hold.hold_id}, items=[update])

    def ended(item: dict[str, Any]) -> Hold:
        current = hold_from_item(item)
        if current.status == "refunded":
            return current
        raise HoldEnded(f"Message {hold.hold_id} is {current.status}.", {"status": current.status})

    _, result = store.apply(hold.account_id, build, ended)
    if isinstance(result, Write):
        count("CreditsRefunded", hold.credits)
    return store.get_hold(hold.account_id, hold.hold_id)


def _as_refund(entry: L.Entry) -> L.Entry:
    return L.Entry(
        "refund" if entry.kind == "void" else entry.kind, entry.pool, entry.amount, entry.balance_after
    )


def sweep_stale_holds(store: LedgerStore, reader: LedgerReader) -> dict[str, int]:
    """Void every hold still pending past its grace period (its send crashed or its callback never came)."""
    counts = {"voided": 0, "already_ended": 0}
    for account_id, hold_id in list(reader.stale_holds(store.clock())):
        try:
            hold = store.get_hold(account_id, hold_id)
            if hold.status != "pending":
                counts["already_ended"] += 1
                continue
            store.void(hold, {"provider_status": "no_callback", "result": "swept"})
            counts["voided"] += 1
        except (HoldEnded, NotFound):
            counts["already_ended"] += 1
    return counts
