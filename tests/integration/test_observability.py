"""What the functions write to stdout: masked, secret-free JSON log lines with a correlation id, and EMF metrics."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from local.token import mint
from smscredits.domain.regions import mask_number
from smscredits.observability import logger, mask_numbers, metrics
from smscredits.services import sending, stripe_events
from tests.functions import Context, call, event, load_function, user
from tests.integration.conftest import TWILIO_TOKEN, FakeTwilioHttp, create
from tests.integration.stripe_support import WEBHOOK_SECRET, checkout, deliver, stripe_api, stripe_event
from tests.integration.test_send_path import AU, callback, send

__all__ = ["stripe_api"]

BODY = "Your table for four is ready"
FULL_NUMBER = re.compile(r"(\+|%2B)\d{10,15}", re.IGNORECASE)
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.")


@pytest.fixture
def stdout(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Log lines and EMF blobs as the functions print them; metrics on (the service fixture turns them off)."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    metrics.clear_metrics()  # earlier tests' metrics are kept, unflushed, while metrics are disabled
    logged = io.StringIO()
    # The log handler holds the stdout it found at import; EMF goes through print, which capsys sees.
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(logged)
    capsys.readouterr()

    def read() -> list[dict[str, Any]]:
        text = logged.getvalue() + capsys.readouterr().out
        logged.seek(0)
        logged.truncate()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    yield read
    handler.setStream(previous)


def _assert_clean(lines: list[dict[str, Any]], *secrets: str) -> None:
    assert lines, "nothing was written"
    for line in lines:
        text = json.dumps(line)
        assert not FULL_NUMBER.search(text), text
        assert BODY not in text, text
        assert not JWT.search(text), text
        assert "sk_test" not in text and "sk_live" not in text, text
        for secret in (WEBHOOK_SECRET, TWILIO_TOKEN, *secrets):
            assert secret not in text, text
        assert line.get("correlation_id"), f"no correlation id: {text}"


def _logs(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "_aws" not in line]


def _metrics(lines: list[dict[str, Any]]) -> dict[str, float]:
    """Metric name → the sum of its datapoints over the EMF blobs."""
    found: dict[str, float] = {}
    for line in lines:
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == "SmsCredits"
            for metric in directive["Metrics"]:
                values = line[metric["Name"]]
                found[metric["Name"]] = found.get(metric["Name"], 0.0) + sum(_as_list(values))
    return found


def _as_list(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]


def test_log_masking_keeps_the_country_code_and_last_three_digits():
    assert mask_numbers('"to": "+61412345678"') == '"to": "+61******678"'
    assert mask_numbers("To=%2B14155550123&From=x") == "To=%2B1*******123&From=x"
    assert mask_numbers("at 2026-11-10T12:00:00+00:00") == "at 2026-11-10T12:00:00+00:00"


def test_a_send_logs_no_number_body_or_token_and_counts_what_it_moved(
    service, twilio: FakeTwilioHttp, stdout
):
    create()
    stdout()
    token = mint("acct-1")
    request = event(
        "send_post_message",
        body={"to": AU, "body": BODY},
        headers={"idempotency-key": "obs-1", "authorization": f"Bearer {token}"},
        claims=user(),
    )

    response = load_function("send").lambda_handler(request, Context())

    assert response["statusCode"] == 202
    lines = stdout()
    _assert_clean(lines, token)
    assert {line["correlation_id"] for line in lines} == {request["requestContext"]["requestId"]}
    counted = _metrics(lines)
    assert (counted["MessagesSent"], counted["SegmentsSent"]) == (1.0, 1.0)
    assert (counted["CreditsHeld"], counted["CreditsPosted"]) == (1.0, 1.0)


def test_a_replayed_send_counts_nothing_again(service, twilio: FakeTwilioHttp, stdout):
    create()
    send(BODY, key="obs-replay")
    stdout()

    send(BODY, key="obs-replay")

    assert not {"MessagesSent", "CreditsHeld", "CreditsPosted"} & set(_metrics(stdout()))


def test_twilio_callbacks_log_clean_and_count_signature_rejections(service, twilio: FakeTwilioHttp, stdout):
    create()
    send(BODY)
    stdout()

    assert callback(twilio, "failed")[0] == 200
    assert callback(twilio, "failed", signature="bm90IHRoZSBzaWduYXR1cmU=")[0] == 403

    lines = stdout()
    _assert_clean(lines)
    assert any(line.get("message") == "twilio callback rejected: bad signature" for line in _logs(lines))
    counted = _metrics(lines)
    assert counted["CreditsRefunded"] == 1.0
    assert counted["TwilioSignatureRejected"] == 1.0 and counted["WebhookSignatureRejected"] == 1.0


def test_a_callback_with_another_messages_sid_is_counted_and_logged_clean(
    service, twilio: FakeTwilioHttp, stdout
):
    create()
    send(BODY, key="obs-sid-1")
    send(BODY, key="obs-sid-2")
    stdout()

    assert callback(twilio, "failed", index=0, sid=twilio.sid(1))[0] == 409

    lines = stdout()
    _assert_clean(lines)
    assert any(line["level"] == "WARNING" and "MessageSid" in line["message"] for line in _logs(lines))
    assert _metrics(lines)["TwilioSidMismatch"] == 1.0


def test_stripe_webhooks_log_clean_and_count_packs_and_rejections(service, stripe_api, stdout):
    create()
    body = checkout(stripe_api).session_event()
    stdout()

    assert deliver(body)[0] == 200
    assert deliver(body, signature="t=1,v1=" + "0" * 64)[0] == 400

    lines = stdout()
    _assert_clean(lines)
    counted = _metrics(lines)
    assert counted["PacksPurchased"] == float(
        body["data"]["object"]["metadata"]["packs"]
    )  # packs, not events
    assert counted["StripeSignatureRejected"] == 1.0 and counted["WebhookSignatureRejected"] == 1.0


def test_an_unmatched_payment_is_counted_and_alerted_once(service, stripe_api, stdout):
    create()
    stdout()
    body = stripe_event("stripe_payment_intent_succeeded")  # a PaymentIntent this service never asked for

    assert deliver(body) == (200, {"received": True, "outcome": "unmatched"})
    assert deliver(body) == (200, {"received": True, "outcome": "unmatched"})  # Stripe redelivers it

    lines = stdout()
    _assert_clean(lines)
    alerts = [line for line in _logs(lines) if line["message"].startswith("ALERT")]
    assert [(a["level"], a["object_id"], a["reason"]) for a in alerts] == [
        ("ERROR", "pi_test_123", "unknown_order")
    ]
    assert _metrics(lines)["UnmatchedPayment"] == 1.0


def test_an_unhandled_error_is_logged_masked_with_its_correlation_id(service, twilio, stdout, monkeypatch):
    create()
    stdout()

    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"provider exploded while sending to {AU}")

    monkeypatch.setattr(sending, "send_message", explode)
    status, answer = call(
        "send",
        "send_post_message",
        body={"to": AU, "body": BODY},
        headers={"idempotency-key": "k"},
        claims=user(),
    )

    assert status == 500 and answer["error"]["code"] == "internal_error"
    lines = _logs(stdout())
    _assert_clean(lines)
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert mask_number(AU) in error["exception"] and error["exception_name"] == "RuntimeError"


def test_scheduled_and_queued_runs_get_a_correlation_id(service):
    scheduled = event("scheduler_sweep")
    record = {
        "messageId": "m-1",
        "receiptHandle": "r-1",
        "body": json.dumps({"account_id": "acct-1"}),
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:RefreshQueue",
    }
    create()

    load_function("sweeper").lambda_handler(scheduled, Context())
    assert logger.get_correlation_id() == scheduled["id"]  # the Scheduler event's id

    load_function("refresh_worker").lambda_handler({"Records": [record]}, Context())
    assert logger.get_correlation_id() == Context.aws_request_id  # a batch has no single event id


def test_an_unhandled_error_is_counted_for_its_alarm(service, twilio, stdout, monkeypatch):
    create()
    stdout()

    def explode(*_: Any, **__: Any) -> Any:
        raise KeyError("a bug of ours")

    monkeypatch.setattr(sending, "send_message", explode)
    status, _ = call(
        "send",
        "send_post_message",
        body={"to": AU, "body": BODY},
        headers={"idempotency-key": "k"},
        claims=user(),
    )

    assert status == 500
    assert _metrics(stdout())["UnhandledError"] == 1.0


def test_a_bug_after_the_stripe_signature_is_a_500_never_a_400(service, stripe_api, stdout, monkeypatch):
    create()
    stdout()

    def explode(*_: Any, **__: Any) -> Any:
        raise TypeError("a bug of ours while granting")

    monkeypatch.setitem(stripe_events._HANDLERS, "checkout.session.completed", explode)
    status, answer = deliver(stripe_event("stripe_checkout_session_completed"))

    # A 400 would tell Stripe (and the operator) that Stripe sent a malformed event; it is our bug: 500,
    # logged with its traceback and counted for the UnhandledError alarm. Stripe retries it later.
    assert status == 500 and answer["error"]["code"] == "internal_error"
    lines = stdout()
    assert _metrics(lines)["UnhandledError"] == 1.0
    assert any(line.get("exception_name") == "TypeError" for line in _logs(lines))
