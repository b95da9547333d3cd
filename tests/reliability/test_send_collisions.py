"""The send path when something collides or fails before or after Twilio's acceptance: Twilio busy, a crash
between the hold and the hand-over, a balance too busy to hold, a post that cannot land, a cancellation that
no retry can fix."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from smscredits import runtime
from smscredits.adapters.sqs import SqsStatusQueue
from smscredits.domain.idempotency import IdempotencyKey, message_id_for, request_hash
from smscredits.domain.movements import HoldRequest
from smscredits.settings import DEFAULT_SWEEP_GRACE_SECONDS
from tests.functions import Context, event, load_function, user
from tests.integration.conftest import FakeTwilioHttp, create, service_ledger
from tests.integration.test_refresh import sqs_record
from tests.integration.test_send_path import callback
from tests.reliability.conftest import audit

AU = "+61491570110"
BODY = "Hello from the shop"


class Remaining(Context):
    def __init__(self, milliseconds: int) -> None:
        self.milliseconds = milliseconds

    def get_remaining_time_in_millis(self) -> int:
        return self.milliseconds


def send(key: str = "k1", remaining_ms: int = 20_000) -> tuple[int, dict[str, str], Any]:
    """The send function's answer: status, headers, body."""
    response = load_function("send").lambda_handler(
        event(
            "send_post_message",
            body={"to": AU, "body": BODY},
            headers={"idempotency-key": key},
            claims=user(),
        ),
        Remaining(remaining_ms),
    )
    return response["statusCode"], response.get("headers") or {}, json.loads(response["body"])


def state() -> dict[str, Any]:
    """The included pool and the held credits (the ledger check passes first)."""
    account = audit(["acct-1"])["acct-1"]
    return {"included": account["pools"]["included"], "held": account["held"]}


def entries() -> list[tuple[str, int]]:
    _, records, _ = runtime.container().statements.partition("acct-1")
    return [(record.kind, record.amount) for record in records if record.kind in ("hold", "post", "void")]


@pytest.mark.parametrize("mode", ["error429", "error500"])
def test_twilio_busy_returns_the_credits_and_the_same_key_sends_again(
    service: Any, twilio: FakeTwilioHttp, mode: str
) -> None:
    create()
    twilio.mode = mode
    status, headers, answer = send()
    assert status == 429 and answer["error"]["code"] == "busy" and headers["Retry-After"] == "1"
    assert state() == {"included": 50, "held": 0}
    twilio.mode = "accept"
    status, _, answer = send()
    assert status == 202 and answer["status"] == "sent" and len(twilio.sent) == 2
    assert send()[2] == answer and len(twilio.sent) == 2  # the try that went out is the key's answer now
    assert state() == {"included": 49, "held": 0}
    assert [kind for kind, _ in entries()].count("hold") == 2  # the try Twilio refused, and the one it took


def test_an_earlier_try_twilio_sent_after_all_is_charged_once_beside_the_try_that_replaced_it(
    service: Any, twilio: FakeTwilioHttp
) -> None:
    create()
    twilio.mode = "error500"  # Twilio answered 500 to try 1, but took the message after all
    assert send()[0] == 429
    twilio.mode = "accept"
    assert send()[2]["status"] == "sent" and len(twilio.sent) == 2  # try 2, with its own SID
    assert state() == {"included": 49, "held": 0}
    assert callback(twilio, "delivered", index=0, sid=twilio.sid(1))[0] == 409  # try 2's SID is not try 1's
    status, answer = callback(twilio, "delivered", index=0)  # Twilio bills try 1: so do we
    assert (status, answer["outcome"]) == (200, "charged late")
    assert state() == {"included": 48, "held": 0}
    assert callback(twilio, "delivered", index=0)[1]["outcome"] == "unchanged"  # once
    assert callback(twilio, "failed", index=0)[1]["outcome"] == "unchanged"  # final is final
    assert callback(twilio, "delivered", index=1)[1]["outcome"] == "status recorded"  # try 2's own status
    assert state() == {"included": 48, "held": 0}
    assert [kind for kind, _ in entries()].count("post") == 1
    _, records, _ = runtime.container().statements.partition("acct-1")
    assert [(r.kind, r.amount, r.reference.get("sid")) for r in records if r.kind == "late_charge"] == [
        ("late_charge", -1, twilio.sid(0))
    ]


def test_an_earlier_try_reported_failed_or_still_on_its_way_changes_nothing(
    service: Any, twilio: FakeTwilioHttp
) -> None:
    create()
    twilio.mode = "error500"
    assert send()[0] == 429
    twilio.mode = "accept"
    assert send()[2]["status"] == "sent"
    for status in ("queued", "sent", "failed", "canceled"):  # its credits came back when it was voided
        assert callback(twilio, status, index=0) == (200, {"outcome": "unchanged"})
    assert state() == {"included": 49, "held": 0}
    assert callback(twilio, "delivered", index=1)[1]["outcome"] == "status recorded"  # try 2 untouched


def _held_by_a_crashed_send(key: str = "k1") -> Any:
    """The hold a send wrote before its process died, before it asked Twilio."""
    ledger = runtime.container().ledger
    request = HoldRequest(
        message_id=message_id_for("acct-1", IdempotencyKey.require(key)),
        segments=1,
        region="AU",
        request_hash=request_hash({"to": AU, "body": BODY}),
        message={"to": AU, "body": BODY, "region": "AU", "encoding": "GSM-7", "segments": 1},
    )
    hold, created = ledger.hold("acct-1", request, attempt_id="crashed")
    assert created
    return hold


def test_a_replay_after_a_crash_before_twilio_sends_the_message_once(
    service: Any, twilio: FakeTwilioHttp
) -> None:
    create()
    _held_by_a_crashed_send()
    status, _, answer = send()
    assert status == 202 and answer["status"] == "sent" and len(twilio.sent) == 1
    assert send()[2]["status"] == "sent" and len(twilio.sent) == 1
    assert state() == {"included": 49, "held": 0}


def test_a_replay_of_a_message_that_may_have_left_never_sends_it_again(
    service: Any, twilio: FakeTwilioHttp
) -> None:
    create()
    hold = _held_by_a_crashed_send()
    runtime.container().ledger.dispatch(hold, "crashed")  # it crashed while Twilio had the request
    status, _, answer = send()
    assert status == 202 and answer["status"] == "pending" and twilio.sent == []
    assert state() == {"included": 49, "held": 1}


def test_messages_go_out_with_a_validity_period_shorter_than_the_sweepers_grace(
    service: Any, twilio: FakeTwilioHttp
) -> None:
    create()
    send()
    assert int(twilio.sent[0]["data"]["ValidityPeriod"]) == 2700 < DEFAULT_SWEEP_GRACE_SECONDS


class Colliding:
    """moto's client, except that while `reason` is set every transaction is cancelled with it."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.reason: str | None = None
        self.transactions = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name != "transact_write_items":
            return attr

        def transact(**request: Any) -> Any:
            self.transactions += 1
            if self.reason is None:
                return attr(**request)
            reasons = [{"Code": self.reason}] + [{"Code": "None"}] * (len(request["TransactItems"]) - 1)
            error = {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}
            raise ClientError({"Error": error, "CancellationReasons": reasons}, "TransactWriteItems")

        return transact


@pytest.fixture
def colliding(service: Any, dynamodb: Any) -> Colliding:
    """The functions' ledger on a Colliding client over moto, with no backoff sleeps."""
    proxy = Colliding(dynamodb)
    runtime.use(runtime.container().replace(ledger=service_ledger(proxy, service, sleep=lambda _: None)))
    return proxy


def test_a_balance_too_busy_to_hold_answers_429_busy_and_reserves_nothing(
    colliding: Colliding, twilio: FakeTwilioHttp
) -> None:
    create()
    colliding.reason = "TransactionConflict"
    status, headers, answer = send()
    assert status == 429 and answer["error"]["code"] == "busy" and headers["Retry-After"] == "1"
    colliding.reason = None
    assert twilio.sent == []
    assert state() == {"included": 50, "held": 0}


def test_a_post_that_cannot_land_after_twilio_accepted_answers_pending_and_the_callback_posts_it(
    colliding: Colliding, twilio: FakeTwilioHttp
) -> None:
    create()
    twilio.on_request = lambda _: setattr(colliding, "reason", "TransactionConflict")
    status, _, answer = send()
    assert status == 202 and answer["status"] == "pending" and len(twilio.sent) == 1
    colliding.reason, twilio.on_request = None, None
    assert callback(twilio, "delivered")[0] == 200
    assert send()[2]["status"] == "sent" and len(twilio.sent) == 1
    assert state() == {"included": 49, "held": 0}


@pytest.mark.parametrize("reason", ["ValidationError", "ItemCollectionSizeLimitExceeded"])
def test_a_cancellation_no_retry_can_fix_is_a_500_at_once_not_a_busy(
    colliding: Colliding, twilio: FakeTwilioHttp, reason: str
) -> None:
    create()
    colliding.reason, colliding.transactions = reason, 0
    status, _, answer = send()
    assert status == 500 and answer["error"]["code"] == "internal_error"
    assert colliding.transactions == 1 and twilio.sent == []


def test_a_delivered_status_for_a_swept_message_charges_it_again(
    service: Any, twilio: FakeTwilioHttp
) -> None:
    clock = service
    create()
    twilio.mode = "timeout"  # Twilio took it, but its answer was lost: pending until a callback
    assert send()[2]["status"] == "pending"
    clock.advance(seconds=DEFAULT_SWEEP_GRACE_SECONDS + 1)
    sweeper = load_function("sweeper")
    assert sweeper.lambda_handler(event("scheduler_sweep"), Context())["voided"] == 1
    assert state() == {"included": 50, "held": 0}
    status, answer = callback(twilio, "delivered")
    assert status == 200 and answer["outcome"] == "charged late"
    assert state() == {"included": 49, "held": 0}
    assert callback(twilio, "delivered")[1]["outcome"] == "unchanged"  # Twilio's retry: once
    assert send()[2]["status"] == "sent" and len(twilio.sent) == 1


# ---- callbacks through the status queue ---------------------------------------------------------------


def queued_records(sqs: Any, url: str) -> list[dict[str, Any]]:
    records = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        records += [sqs_record(m["MessageId"], m["Body"]) for m in batch]
    return records


@pytest.fixture
def status_queue(colliding: Colliding) -> tuple[Any, str]:
    """The status queue on moto's SQS, wired into the functions' ports."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="status")["QueueUrl"]
    runtime.use(runtime.container().replace(status_queue=SqsStatusQueue(url, client=sqs)))
    return sqs, url


def test_a_callback_is_queued_at_once_even_when_the_balance_is_too_busy_and_the_worker_applies_it_once(
    colliding: Colliding, status_queue: tuple[Any, str], twilio: FakeTwilioHttp
) -> None:
    sqs, url = status_queue
    create()
    assert send()[2]["status"] == "sent"
    colliding.reason = "TransactionConflict"  # every balance write is cancelled while the callback comes
    status, answer = callback(twilio, "failed")
    assert (status, answer["outcome"]) == (200, "queued")
    records = queued_records(sqs, url)
    worker = load_function("status_worker")
    failures = worker.lambda_handler({"Records": records}, Context())["batchItemFailures"]
    assert failures == [{"itemIdentifier": records[0]["messageId"]}]  # back to the queue, retried later
    colliding.reason = None
    assert worker.lambda_handler({"Records": records}, Context()) == {"batchItemFailures": []}
    assert worker.lambda_handler({"Records": records}, Context()) == {"batchItemFailures": []}  # redelivery
    assert state() == {"included": 50, "held": 0}  # refunded once


def test_a_post_that_cannot_land_after_acceptance_is_finished_by_the_status_worker(
    colliding: Colliding, status_queue: tuple[Any, str], twilio: FakeTwilioHttp
) -> None:
    sqs, url = status_queue
    create()
    twilio.on_request = lambda _: setattr(colliding, "reason", "TransactionConflict")
    status, _, answer = send()
    assert status == 202 and answer["status"] == "pending"
    colliding.reason, twilio.on_request = None, None
    [record] = queued_records(sqs, url)
    assert load_function("status_worker").lambda_handler({"Records": [record]}, Context()) == {
        "batchItemFailures": []
    }
    assert state() == {"included": 49, "held": 0}
    assert send()[2]["status"] == "sent" and len(twilio.sent) == 1


def test_a_send_too_late_to_hear_twilio_and_post_before_the_function_stops_is_429_and_never_sent(
    service: Any, twilio: FakeTwilioHttp
) -> None:
    create()
    status, headers, answer = send(remaining_ms=11_000)  # Twilio's 8 s and the post's 4 s do not fit
    assert status == 429 and answer["error"]["code"] == "busy" and headers["Retry-After"] == "1"
    assert twilio.sent == [] and state() == {"included": 50, "held": 0}
    assert send(remaining_ms=20_000)[2]["status"] == "sent" and len(twilio.sent) == 1  # the same key, later
