"""Twilio stand-in: answers messages.create like Twilio, then sends the signed status callbacks.

What happens depends on the recipient (ACMA's fictional Australian mobile numbers):

    +61491570156   refused at once: HTTP 400, code 21610 (unsubscribed recipient)
    +61491570157   accepted, then callback `failed` (ErrorCode 30006): the credits come back
    +61491570158   accepted, then callback `undelivered` (ErrorCode 30003): stays charged
    +61491570159   accepted, and no callback ever comes
    anything else  accepted, then callbacks `sent` and `delivered`

Served under /__local/twilio: POST /2010-04-01/Accounts/{AccountSid}/Messages.json (what the SDK calls when
TWILIO_API_BASE points here) and GET /messages (every message received, for tests).

For crash tests: POST /hold {"to": number} makes every later message to that number wait, once accepted
(recorded, callbacks on their way), before its answer goes back: the sender is then between Twilio's
acceptance and knowing of it. GET /held lists the waiting messages; POST /release {"to": number} lets them
answer and stops holding that number. A test can kill the worker that is waiting (GET /__local/workers).
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from smscredits.domain.segments import count_segments
from smscredits.observability import mask_numbers

log = logging.getLogger("local.twilio")

API_VERSION = "2010-04-01"
UNSUBSCRIBED = "+61491570156"
HOLD_LIMIT_SECONDS = 300.0  # a held answer goes out after this even if nobody releases it


@dataclass(frozen=True)
class Scenario:
    statuses: tuple[str, ...]
    error_code: str | None = None


SCENARIOS = {
    "+61491570157": Scenario(("failed",), "30006"),
    "+61491570158": Scenario(("undelivered",), "30003"),
    "+61491570159": Scenario(()),
}
DELIVERED = Scenario(("sent", "delivered"))


def describe() -> str:
    """The recipients table of this module's docstring, for the start-up banner."""
    return "\n".join(line for line in (__doc__ or "").splitlines() if line.startswith("    "))


def _twilio_error(status: int, code: int, message: str) -> Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(json.dumps(body), status, content_type="application/json")


class TwilioStandIn:
    """A WSGI app; keeps every message it received in memory."""

    def __init__(self, auth_token: str, callback_delay: float) -> None:
        self.auth_token = auth_token
        self.validator = RequestValidator(auth_token)
        self.callback_delay = callback_delay
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._holding: dict[str, threading.Event] = {}  # number → released
        self._held: dict[str, str] = {}  # sid → number, while its answer waits
        self._urls = Map(
            [
                Rule(
                    f"/{API_VERSION}/Accounts/<account_sid>/Messages.json",
                    endpoint="create",
                    methods=["POST"],
                ),
                Rule("/messages", endpoint="list", methods=["GET"]),
                Rule("/hold", endpoint="hold", methods=["POST"]),
                Rule("/held", endpoint="held", methods=["GET"]),
                Rule("/release", endpoint="release", methods=["POST"]),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, arguments = self._urls.bind_to_environ(environ).match()
        except HTTPException as refused:
            response: Response = _twilio_error(
                refused.code or 404, 20404, "The requested resource was not found"
            )
        else:
            if endpoint == "create":
                response = self.create(request, **arguments)
            elif endpoint in ("hold", "release"):
                response = self.hold_or_release(request, hold=endpoint == "hold")
            else:
                response = self.listing() if endpoint == "list" else self.held()
        return response(environ, start_response)

    def hold_or_release(self, request: Request, hold: bool) -> Response:
        number = str((request.get_json(silent=True) or {}).get("to") or "")
        if not number:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        with self._lock:
            if hold:
                self._holding.setdefault(number, threading.Event())
            elif number in self._holding:
                self._holding.pop(number).set()
        return Response(json.dumps({"to": number, "holding": hold}), 200, content_type="application/json")

    def held(self) -> Response:
        with self._lock:
            waiting = [{"sid": sid, "to": to} for sid, to in self._held.items()]
        return Response(json.dumps({"held": waiting}), 200, content_type="application/json")

    def listing(self) -> Response:
        with self._lock:
            messages = [dict(message) for message in self.messages]
        return Response(json.dumps({"messages": messages}), 200, content_type="application/json")

    def create(self, request: Request, account_sid: str) -> Response:
        auth = request.authorization
        if auth is None or auth.username != account_sid or auth.password != self.auth_token:
            return _twilio_error(401, 20003, "Authenticate")
        form = request.form
        to, body = form.get("To", ""), form.get("Body", "")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        if not sender and not service:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if to == UNSUBSCRIBED:
            log.info(mask_numbers(f"refused a message to {to}: 21610 unsubscribed recipient"))
            return _twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        sid = "SM" + uuid.uuid4().hex
        now = email.utils.format_datetime(datetime.now(UTC))
        resource = {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(count_segments(body, smart_encoding=False).segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Media.json"},
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json",
        }
        callback = form.get("StatusCallback")
        scenario = SCENARIOS.get(to, DELIVERED)
        record: dict[str, Any] = {**resource, "status_callback": callback, "callbacks": []}
        with self._lock:
            self.messages.append(record)
        log.info(
            mask_numbers(
                f"{sid} to {to}, {resource['num_segments']} segment(s): {body[:60]!r}"
                f" → {', '.join(scenario.statuses) or 'no callback'}"
            )
        )
        if callback and scenario.statuses:
            threading.Thread(
                target=self._deliver, args=(record, callback, scenario), name=f"callback-{sid}", daemon=True
            ).start()
        with self._lock:
            released = self._holding.get(to)
            if released is not None:
                self._held[sid] = to
        if released is not None:
            log.info(mask_numbers(f"{sid} to {to} accepted; its answer is held until released"))
            released.wait(HOLD_LIMIT_SECONDS)
            with self._lock:
                self._held.pop(sid, None)
        return Response(json.dumps(resource), 201, content_type="application/json")

    def _deliver(self, record: dict[str, Any], url: str, scenario: Scenario) -> None:
        """Each status in turn, signed over the exact callback URL as Twilio signs it."""
        for status in scenario.statuses:
            time.sleep(self.callback_delay)
            params = {
                "AccountSid": record["account_sid"],
                "ApiVersion": API_VERSION,
                "From": record["from"] or "",
                "MessageSid": record["sid"],
                "MessageStatus": status,
                "SmsSid": record["sid"],
                "SmsStatus": status,
                "To": record["to"],
            }
            if scenario.error_code and status in ("failed", "undelivered"):
                params["ErrorCode"] = scenario.error_code
            headers = {
                "X-Twilio-Signature": self.validator.compute_signature(url, params),
                "User-Agent": "TwilioProxy/1.1",
            }
            try:
                answer = requests.post(url, data=params, headers=headers, timeout=15)
            except requests.RequestException as failure:
                log.warning("%s callback %s could not be delivered: %s", record["sid"], status, failure)
                outcome: int | str = "unreachable"
            else:
                log.info("%s callback %s → %d", record["sid"], status, answer.status_code)
                outcome = answer.status_code
            with self._lock:
                record["status"] = status
                record["callbacks"].append({"status": status, "response": outcome})
