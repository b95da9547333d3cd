"""The Stripe stand-in's webhooks: events in Stripe's envelope, signed as Stripe signs them, delivered in order
from a thread of their own after the request that caused them has answered, and kept for GET /events."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import requests
import stripe

log = logging.getLogger("local.stripe")


def signature_header(payload: str, secret: str, at: int) -> str:
    """Stripe-Signature: t=<unix>,v1=<HMAC-SHA256 of "<t>.<payload>" with the endpoint's secret>."""
    digest = hmac.new(secret.encode(), f"{at}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """An event about `obj` as it is now (a snapshot: the object changes later)."""
    return {
        "id": "evt_" + uuid.uuid4().hex[:24],
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()),
        "data": {"object": json.loads(json.dumps(obj))},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


class Webhooks:
    """The events sent, each with its delivery outcome (pending, an HTTP status, or unreachable)."""

    def __init__(self, *, url: str, secret: str, delay: float) -> None:
        self.url = url
        self.secret = secret
        self.delay = delay
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send(self, events: list[dict[str, Any]]) -> None:
        """Record the events, then deliver them in order from another thread, after this request answers:
        the function calling the stand-in is still running."""
        records = [{"event": each, "delivery": "pending"} for each in events]
        with self._lock:
            self.sent.extend(records)
        threading.Thread(target=self._deliver, args=(records,), name="stripe-webhooks", daemon=True).start()

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            time.sleep(self.delay)
            payload = json.dumps(record["event"])
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature_header(payload, self.secret, int(time.time())),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            try:
                answer = requests.post(self.url, data=payload.encode(), headers=headers, timeout=30)
            except requests.RequestException as failure:
                log.warning("%s could not be delivered: %s", record["event"]["type"], failure)
                outcome: int | str = "unreachable"
            else:
                log.info("%s %s → %d", record["event"]["id"], record["event"]["type"], answer.status_code)
                outcome = answer.status_code
            with self._lock:
                record["delivery"] = outcome

    def newest_first(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**record["event"], "delivery": record["delivery"]} for record in reversed(self.sent)]
