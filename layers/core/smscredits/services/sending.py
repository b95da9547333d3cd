"""Quote and send a message: validate, count, hold its credits, hand it to the provider, post or void."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlencode

from smscredits.domain import ledger as L
from smscredits.domain.account import Account, Hold
from smscredits.domain.delivery import public_status
from smscredits.domain.errors import (
    BodyTooLong,
    Busy,
    EmptyBody,
    HoldEnded,
    IdempotencyKeyReused,
    InsufficientCredits,
)
from smscredits.domain.idempotency import IdempotencyKey, message_id_for, request_hash
from smscredits.domain.movements import CountedWithStaleSetting, HoldRequest
from smscredits.domain.regions import parse_recipient
from smscredits.domain.segments import SegmentCount, count_segments, gsm_replacement, replace_non_gsm
from smscredits.domain.text import has_visible, refuse_control_characters
from smscredits.observability import count, logger

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import Ledger, Recharger, Sender, StatusQueue

MAX_BODY_CHARACTERS = 1600


class PreparedMessage(NamedTuple):
    to: str
    region: str
    text: str  # what we count and what we send: trimmed, smart-encoded when the account asks
    counted: SegmentCount


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
    counted = count_segments(text, smart_encoding=smart_encoding)
    if len(counted.text) > MAX_BODY_CHARACTERS:  # smart encoding can lengthen a body (… → ...)
        raise BodyTooLong(
            f"After smart encoding the body has {len(counted.text)} characters; the limit is {MAX_BODY_CHARACTERS}.",
            {"characters": len(counted.text), "limit": MAX_BODY_CHARACTERS},
        )
    return PreparedMessage(number, region, counted.text, counted)


def funding_out(funding: tuple[L.Funding, ...]) -> list[dict[str, Any]]:
    return [{"pool": f.pool, "credits": f.credits} for f in funding]


def quote(account: Account, to: str, body: str, legacy_rates: Mapping[str, int]) -> dict[str, Any]:
    """What a send would cost and take, now, without moving anything."""
    prepared = prepare_message(to, body, smart_encoding=account.smart_encoding)
    smart = count_segments(body.rstrip(), smart_encoding=True)
    credits = L.message_credits(
        account.credit_model, prepared.counted.segments, prepared.region, legacy_rates
    )
    try:
        funding = L.funding_for(account.credit_model, account.pools, prepared.region, credits)
        affordable = True
    except InsufficientCredits:
        funding, affordable = (), False
    count = prepared.counted
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
        "funding": funding_out(funding),
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
    if not prepared.counted.non_gsm_characters:
        return None
    text = replace_non_gsm(prepared.counted).rstrip()  # trimmed as a send would trim it
    if not has_visible(text):
        return None
    count = count_segments(text)
    credits = L.message_credits(account.credit_model, count.segments, prepared.region, legacy_rates)
    return {"encoding": count.encoding, "segments": count.segments, "credits": credits}


class SendCommand(NamedTuple):
    account_id: str
    idempotency_key: IdempotencyKey
    to: str
    body: str
    callback_base_url: str  # where Twilio's status callbacks for this message go
    deadline: float | None = None  # time.monotonic() by which the send must answer (the function's time left)
    # time.monotonic() after which the message is not handed to Twilio any more: Twilio's answer and the post
    # might not fit before the deadline, and a function stopped after Twilio's acceptance answers a 5xx
    dispatch_by: float | None = None


class SendResult(NamedTuple):
    """The message as the send leaves it: its public status, its hold and what to tell the caller."""

    status: str  # pending | sent | failed | rejected
    hold: Hold
    detail: str | None


def result_of(hold: Hold, detail: str | None = None) -> SendResult:
    return SendResult(
        public_status(hold.status, hold.provider), hold, detail or hold.provider.get("error_message")
    )


def status_callback_url(base_url: str, hold: Hold) -> str:
    return f"{base_url}/webhooks/twilio/status?" + urlencode(
        {"account_id": hold.account_id, "message_id": hold.message_id, "try": hold.tries}
    )


def send_message(
    ledger: Ledger,
    sender: Sender,
    recharger: Recharger | None,
    command: SendCommand,
    status_queue: StatusQueue | None = None,
) -> SendResult:
    """Send one message. The same key and body answer the same result, and never send twice.

    When the pools cannot cover it, `recharger` is asked once (auto-recharge) and the hold is tried again if
    credits may have arrived; once the message keeps its credits, `recharger` may top the region up (its
    failures never change the answer: the message is out)."""
    account_id = command.account_id
    message_id = message_id_for(account_id, command.idempotency_key)
    attempt = uuid.uuid4().hex  # every try below is this one call
    # This instance's cached view of the account: the hold checks it against the state it is pinned to.
    smart_encoding = ledger.known_account(account_id).smart_encoding
    try:
        prepared, request, hold, created = _hold(ledger, command, message_id, smart_encoding, attempt)
    except InsufficientCredits as short:
        needed = int(short.details.get("needed", 1))
        region = parse_recipient(command.to)[1]
        if recharger is None or not recharger.when_short(
            account_id, region, needed, deadline=command.deadline
        ):
            raise
        prepared, request, hold, created = _hold(ledger, command, message_id, smart_encoding, attempt)
    if hold.request_hash != request.request_hash:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request.", {"message_id": message_id}
        )
    if hold.status != "pending" or hold.dispatching:
        return result_of(hold)  # a replay: the first request's outcome, no second send
    # Pending and never handed over: ours, or a replay's after a crash before Twilio was asked. Exactly one
    # attempt marks it; any other (a racing replay) answers pending: the message may be on its way.
    if command.dispatch_by is not None and time.monotonic() > command.dispatch_by:
        _give_back(ledger, hold)
        count("SendOutOfTime")
        raise Busy(
            "Too busy to send in time; nothing was sent or charged. Try again.", {"message_id": message_id}
        )
    try:
        hold = ledger.dispatch(hold, attempt)
    except Busy:
        _give_back(ledger, hold)
        raise
    if hold.status != "pending" or hold.dispatching != attempt:
        return result_of(hold)
    if created:
        count("CreditsHeld", hold.credits)
    result = _hand_over(ledger, sender, hold, prepared, command.callback_base_url, status_queue)
    if recharger is not None:
        try:
            recharger.after_debit(account_id, prepared.region, deadline=command.deadline)
        except Exception:  # the message is out and charged: a failed top-up must not make it an error
            logger.exception(
                "after-debit recharge failed", extra={"account_id": account_id, "region": prepared.region}
            )
    return result


def _hold(
    ledger: Ledger, command: SendCommand, message_id: str, smart_encoding: bool, attempt: str
) -> tuple[PreparedMessage, HoldRequest, Hold, bool]:
    """Hold the message as counted with `smart_encoding`; when the account the write is pinned to has the
    other setting (this instance's cached view was older), count it again with that one and hold."""
    prepared, request = _hold_request(command, message_id, smart_encoding)
    try:
        hold, created = ledger.hold(command.account_id, request, attempt_id=attempt)
    except CountedWithStaleSetting as stale:
        prepared, request = _hold_request(command, message_id, stale.smart_encoding)
        hold, created = ledger.hold(command.account_id, request, attempt_id=attempt)
    return prepared, request, hold, created


def _hold_request(
    command: SendCommand, message_id: str, smart_encoding: bool
) -> tuple[PreparedMessage, HoldRequest]:
    prepared = prepare_message(command.to, command.body, smart_encoding=smart_encoding)
    request = HoldRequest(
        message_id=message_id,
        segments=prepared.counted.segments,
        region=prepared.region,
        request_hash=request_hash({"to": command.to, "body": command.body}),
        message={
            "to": prepared.to,
            "body": prepared.text,
            "region": prepared.region,
            "encoding": prepared.counted.encoding,
            "segments": prepared.counted.segments,
        },
        smart_encoding=smart_encoding,
    )
    return prepared, request


def _queue_post(status_queue: StatusQueue | None, hold: Hold, status: str, sid: str | None) -> None:
    if status_queue is None:
        return
    try:
        status_queue.send(
            {"account_id": hold.account_id, "message_id": hold.message_id, "status": status, "sid": sid}
        )
    except Exception:  # the callback still posts it; the answer stays 202 pending
        logger.exception("deferred post not queued", extra={"message_id": hold.message_id})


def _give_back(ledger: Ledger, hold: Hold) -> None:
    """Nothing was sent: return the credits and leave the key usable (its next use holds the message again). If
    even that cannot land now, the hold stays pending and unmarked: the key's next use sends it."""
    try:
        ledger.void(hold, {"result": "busy", "retryable": True})
    except Busy:
        logger.warning("hold left for the key's next use", extra={"message_id": hold.message_id})


def _hand_over(
    ledger: Ledger,
    sender: Sender,
    hold: Hold,
    prepared: PreparedMessage,
    base_url: str,
    status_queue: StatusQueue | None,
) -> SendResult:
    """Give the held message to the provider, then charge it, return it, or leave it to its callback."""
    outcome = sender.send(
        to=prepared.to, body=prepared.text, status_callback=status_callback_url(base_url, hold)
    )
    # The create answer's status is the message's first recorded Twilio status (what callbacks move on from).
    provider = {
        ("provider_status" if k == "status" else k): v for k, v in outcome._asdict().items() if v is not None
    }
    if outcome.result == "rejected":
        voided = ledger.void(hold, provider)
        return result_of(voided, f"The provider refused the message: {outcome.error_message}")
    if outcome.result == "retryable":
        # Not sent: return the credits and leave the key usable (its next use holds the message again).
        ledger.void(hold, {**provider, "result": "busy", "retryable": True})
        count("TwilioBusy")
        raise Busy(
            "The SMS provider is busy; nothing was sent or charged. Try again with the same Idempotency-Key.",
            {"message_id": hold.message_id, "provider_error_code": outcome.error_code},
        )
    if outcome.result != "accepted":
        # Unknown: it may have gone out. Never re-send; the status callback posts it, or the sweeper voids it.
        return result_of(hold, "The provider did not confirm the message; its status will follow.")
    count("MessagesSent")
    count("SegmentsSent", prepared.counted.segments)
    try:
        posted = ledger.post(hold, provider)
    except HoldEnded:
        # Its `failed` callback overtook us and already returned the credits: report that outcome.
        posted = ledger.get_hold(hold.account_id, hold.message_id)
    except Exception:
        # Twilio took the message: never an error now. The status worker posts it from the queue (retried
        # until it lands), and its status callback would too (it carries the SID).
        logger.exception("post deferred", extra={"message_id": hold.message_id, "sid": outcome.sid})
        count("PostDeferred")
        _queue_post(status_queue, hold, outcome.status or "accepted", outcome.sid)
        return result_of(hold, "The message was accepted; its charge will be recorded shortly.")
    if posted.provider.get("sid") != outcome.sid:
        # A callback that overtook us recorded another SID: only a forged (yet signed) callback can. The
        # message is out, so the answer stands; the operator is told.
        logger.error(
            "ALERT a status callback recorded another SID than Twilio's answer",
            extra={"message_id": hold.message_id, "sid": outcome.sid, "recorded": posted.provider.get("sid")},
        )
        count("TwilioSidMismatch")
    return result_of(posted)
