"""Sending through local mode: running out, mixed funding, failed deliveries, idempotency, the stand-in."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import requests
from twilio.request_validator import RequestValidator

from tests.blackbox.conftest import AU_NUMBER, Api, LocalMode, error_of, wait_for

pytestmark = pytest.mark.blackbox
LOCAL_TWILIO_TOKEN = "local-twilio-token"  # local mode's default TWILIO_AUTH_TOKEN
SILENT = "+61491570159"  # the stand-in accepts it and never calls back: the test plays Twilio's callbacks


def test_sends_until_the_included_credits_run_out(as_account: Callable[[str], Api]) -> None:
    starter = as_account("demo-starter")
    assert starter.balance()["included"]["available"] == 50
    for n in range(50):
        answer = starter.send(AU_NUMBER, f"Thanks for visiting! Review request {n}")
        assert answer.status_code == 202, answer.text
        assert answer.json()["funding"] == [{"pool": "included", "credits": 1}]
        assert answer.json()["status"] == "sent"

    refused = starter.send(AU_NUMBER, "One too many")

    assert refused.status_code == 402
    error = error_of(refused)
    assert error["code"] == "insufficient_credits"
    assert error["details"]["needed"] == 1
    assert error["details"]["pools"] == {"included": 0, "purchased:AU": 0}
    balance = starter.balance()
    assert (balance["included"]["available"], balance["purchased"]["AU"], balance["held"]) == (0, 0, 0)


def test_one_message_draws_from_included_and_the_region_pool(
    admin: Api, as_account: Callable[[str], Api]
) -> None:
    adjust = {"pool": "included", "credits": -99, "reason": "blackbox: leave one included credit"}
    adjusted = admin.post("/v1/admin/accounts/demo-growth/adjustments", adjust, key="bb-growth-included")
    assert adjusted.status_code == 200, adjusted.text
    assert adjusted.json()["balance_after"] == 1
    growth = as_account("demo-growth")
    body = "a" * 161  # two GSM-7 segments
    expected = [{"pool": "included", "credits": 1}, {"pool": "purchased:AU", "credits": 1}]

    quote = growth.post("/v1/messages/quote", {"to": AU_NUMBER, "body": body})
    sent = growth.send(AU_NUMBER, body)

    assert quote.status_code == 200 and quote.json()["funding"] == expected, quote.text
    assert quote.json()["segments"] == 2 and quote.json()["affordable"] is True
    assert sent.status_code == 202, sent.text
    assert (sent.json()["segments"], sent.json()["credits"], sent.json()["funding"]) == (2, 2, expected)
    balance = growth.balance()
    assert (balance["included"]["available"], balance["purchased"]["AU"]) == (0, 199)


def test_a_failed_delivery_returns_the_credits(new_account: Callable[..., Api]) -> None:
    owner = new_account()
    before = owner.balance()["included"]["available"]

    sent = owner.send("+61491570157", "This one will fail at the carrier")
    assert sent.status_code == 202 and sent.json()["status"] == "sent", sent.text
    message_id = sent.json()["message_id"]

    def settled() -> dict[str, object] | None:
        answer = owner.get(f"/v1/messages/{message_id}")
        assert answer.status_code == 200, answer.text
        return answer.json() if answer.json()["status"] == "failed" else None

    message = wait_for(settled)
    assert message, "the failed callback never settled the message"
    assert message["billing"] == "refunded"
    assert message["provider_status"] == "failed"
    balance = owner.balance()
    assert (balance["included"]["available"], balance["held"]) == (before, 0)


def test_undelivered_stays_charged_and_a_refused_number_costs_nothing(
    new_account: Callable[..., Api], local_mode: LocalMode
) -> None:
    owner = new_account()
    undelivered = owner.send("+61491570158", "The carrier tried")
    refused = owner.send("+61491570156", "Unsubscribed recipient")
    assert undelivered.status_code == 202 and refused.status_code == 202

    assert refused.json()["status"] == "rejected"
    assert "21610" in str(owner.get(f"/v1/messages/{refused.json()['message_id']}").json()["error"])
    assert wait_for(
        lambda: callbacks(local_mode, "The carrier tried") == [{"status": "undelivered", "response": 200}]
    )
    message = owner.get(f"/v1/messages/{undelivered.json()['message_id']}").json()
    assert (message["status"], message["billing"]) == ("sent", "charged")
    assert owner.balance()["included"]["available"] == 50 - 1
    assert callbacks(local_mode, "Unsubscribed recipient") is None


def test_the_same_idempotency_key_sends_once(new_account: Callable[..., Api], local_mode: LocalMode) -> None:
    owner = new_account()
    key, body = uuid.uuid4().hex, f"Your appointment is confirmed ({uuid.uuid4().hex[:8]})"

    first = owner.send(AU_NUMBER, body, key=key)
    again = owner.send(AU_NUMBER, body, key=key)
    other_body = owner.send(AU_NUMBER, body + "!", key=key)
    no_key = owner.post("/v1/messages", {"to": AU_NUMBER, "body": body})

    assert first.status_code == again.status_code == 202
    assert first.json()["message_id"] == again.json()["message_id"]
    assert [m["body"] for m in local_mode.twilio_messages()].count(body) == 1
    assert owner.balance()["included"]["available"] == 50 - 1
    assert other_body.status_code == 422 and error_of(other_body)["code"] == "idempotency_key_reused"
    assert no_key.status_code == 400 and error_of(no_key)["code"] == "idempotency_key_required"


def test_the_stand_in_gets_what_the_sdk_sends_and_signs_callbacks_the_service_accepts(
    new_account: Callable[..., Api], local_mode: LocalMode
) -> None:
    owner = new_account()
    body = f"Delivered normally ({uuid.uuid4().hex[:8]})"
    sent = owner.send(AU_NUMBER, body)
    assert sent.status_code == 202

    answered = [{"status": "sent", "response": 200}, {"status": "delivered", "response": 200}]
    assert wait_for(lambda: callbacks(local_mode, body) == answered), callbacks(local_mode, body)
    record = next(m for m in local_mode.twilio_messages() if m["body"] == body)
    assert record["sid"].startswith("SM") and len(record["sid"]) == 34
    assert record["to"] == AU_NUMBER and record["num_segments"] == "1"
    assert str(record["status_callback"]).startswith(f"{local_mode.base_url}/webhooks/twilio/status?")
    message = owner.get(f"/v1/messages/{sent.json()['message_id']}").json()
    assert (message["status"], message["billing"]) == ("sent", "charged")
    log = local_mode.output().split("local mode ready", 1)[1]  # the banner's sample curl shows a number
    assert "+61******110" in log and AU_NUMBER not in log  # the statements' mask: country code, last three


def callbacks(local_mode: LocalMode, body: str) -> list[dict[str, object]] | None:
    """The status callbacks the stand-in delivered for the message with this body (None: never received)."""
    found = [m for m in local_mode.twilio_messages() if m["body"] == body]
    return list(found[-1]["callbacks"]) if found else None


def signed_callback(
    local_mode: LocalMode, body: str, status: str, sid: str | None = None
) -> requests.Response:
    """A status callback for the message with this body, signed as Twilio signs it, from outside."""
    record = next(m for m in local_mode.twilio_messages() if m["body"] == body)
    url = str(record["status_callback"])
    params = {"MessageSid": sid or str(record["sid"]), "MessageStatus": status, "AccountSid": "AC" + "1" * 32}
    signature = RequestValidator(LOCAL_TWILIO_TOKEN).compute_signature(url, params)
    return requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=30)


@pytest.mark.parametrize("final", ["delivered", "undelivered"])
def test_a_failed_callback_after_a_final_status_changes_nothing(
    new_account: Callable[..., Api], local_mode: LocalMode, final: str
) -> None:
    owner = new_account()
    body = f"Final is final ({uuid.uuid4().hex[:8]})"
    sent = owner.send(SILENT, body)
    assert sent.status_code == 202 and sent.json()["status"] == "sent", sent.text

    path = f"/v1/messages/{sent.json()['message_id']}"
    first = signed_callback(local_mode, body, final)
    assert (first.status_code, first.json()) == (200, {"outcome": "queued"})  # the status worker applies it
    assert wait_for(lambda: owner.get(path).json()["provider_status"] == final, timeout=30)
    late = signed_callback(local_mode, body, "failed")
    assert (late.status_code, late.json()) == (200, {"outcome": "queued"})
    time.sleep(3)  # time for the worker to apply it, were it applied
    message = owner.get(path).json()
    assert (message["status"], message["billing"], message["provider_status"]) == ("sent", "charged", final)
    assert owner.balance()["included"]["available"] == 50 - 1


def test_a_callback_carrying_another_messages_sid_is_refused(
    new_account: Callable[..., Api], local_mode: LocalMode
) -> None:
    owner = new_account()
    mine, other = (f"{name} ({uuid.uuid4().hex[:8]})" for name in ("Mine", "Another"))
    sent = owner.send(SILENT, mine)
    assert owner.send(SILENT, other).status_code == 202
    other_sid = next(m["sid"] for m in local_mode.twilio_messages() if m["body"] == other)

    forged = signed_callback(local_mode, mine, "failed", sid=str(other_sid))

    # Answered at once (Twilio never retries); the status worker refuses it (sid_mismatch, logged, counted).
    assert (forged.status_code, forged.json()) == (200, {"outcome": "queued"})
    time.sleep(3)  # time for the worker to apply it, were it applied
    message = owner.get(f"/v1/messages/{sent.json()['message_id']}").json()
    assert (message["status"], message["billing"]) == ("sent", "charged")
    assert owner.balance()["included"]["available"] == 50 - 2
    assert signed_callback(local_mode, mine, "failed").json() == {"outcome": "queued"}
    assert wait_for(lambda: owner.balance()["included"]["available"] == 50 - 1, timeout=30)
