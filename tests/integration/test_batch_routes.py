"""The batch routes through their functions (API Gateway events, moto, the real Twilio SDK over a recording
client): quote, create, the worker's jobs from SQS events, Twilio's signed callbacks, read, list, cancel."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from twilio.request_validator import RequestValidator

from smscredits import runtime
from smscredits.adapters.dynamo.batches import DynamoBatchMessages
from smscredits.adapters.memory_batches import InMemoryBatchQueue
from smscredits.adapters.sqs import SqsStatusQueue
from smscredits.domain.audit import check_account
from tests.conftest import TABLE
from tests.functions import Context, call, event, load_function, user
from tests.integration.conftest import TWILIO_TOKEN, FakeTwilioHttp, create
from tests.integration.test_account_lifecycle import patch, read
from tests.integration.test_refresh import sqs_record

BODY = "Hi, how was your visit? Reply STOP to opt out."


@pytest.fixture
def queue(service: Any, dynamodb: Any) -> InMemoryBatchQueue:
    jobs = InMemoryBatchQueue()
    runtime.use(
        runtime.container().replace(
            batch_messages=DynamoBatchMessages(TABLE, client=dynamodb), batch_queue=jobs
        )
    )
    create("acct-1")
    return jobs


def messages(count: int, *, bad: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"to": "+1" if i in bad else f"+61412{i:06d}", "body": BODY, "ref": f"r{i}"} for i in range(count)
    ]


def post(path: str, body: Any = None, key: str | None = "b1", account: str = "acct-1") -> tuple[int, Any]:
    headers = {"idempotency-key": key} if key else {"idempotency-key": ""}
    return call("batch_api", "batch_post_batch", body=body, headers=headers, claims=user(account), path=path)


def get(path: str, query: dict[str, str] | None = None, account: str = "acct-1") -> tuple[int, Any]:
    changes: dict[str, Any] = {"claims": user(account), "path": path}
    if query:
        changes["query"] = query
    return call("batch_api", "account_get_balance", **changes)


def work(queue: InMemoryBatchQueue) -> None:
    """Every queued job through the worker function as SQS delivers it, once (a settle job after its delay)."""
    template = event("batch_worker_job")
    for job in queue.take():
        if job["kind"] == "settle":
            runtime.container().ledger.clock.advance(seconds=60)  # type: ignore[attr-defined]
        record = {**template["Records"][0], "body": json.dumps(job)}
        answer = load_function("batch_worker").lambda_handler({"Records": [record]}, Context())
        assert answer == {"batchItemFailures": []}


def deliver(twilio: FakeTwilioHttp, status: str, *, outcome: str = "status recorded") -> None:
    for index, _ in enumerate(twilio.sent):
        url = twilio.callback_url(index)
        params = {"MessageSid": twilio.sid(index), "MessageStatus": status}
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
        query = url.partition("?")[2]
        status_code, answer = call(
            "twilio_status",
            "twilio_status_delivered",
            body="&".join(f"{k}={v}" for k, v in params.items()),
            headers={"x-twilio-signature": signature},
            query=dict(pair.split("=") for pair in query.split("&")),
        )
        assert status_code == 200 and answer["outcome"] == outcome, answer


def test_quote_create_send_settle_and_read_a_batch(queue: InMemoryBatchQueue, twilio: FakeTwilioHttp) -> None:
    status, quote = post("/v1/batches/quote", {"messages": messages(12, bad=(4,))}, key=None)
    assert status == 200, quote
    assert quote["valid"] == 11 and quote["invalid"] == [{"index": 4, "code": "invalid_number"}]
    assert quote["by_region"] == {"AU": {"messages": 11, "segments": 11, "credits": 11}}

    status, created = post("/v1/batches", {"messages": messages(12, bad=(4,))})
    assert status == 202, created
    assert created["accepted"] == 11 and created["credits_held"] == 11 and created["status"] == "queued"
    assert created["rejected"] == [{"index": 4, "code": "invalid_number"}]
    assert runtime.container().ledger.get_account("acct-1").held == 11

    work(queue)
    assert len(twilio.sent) == 11
    deliver(twilio, "delivered")
    work(queue)  # the settle job after the last slice
    status, shown = get(f"/v1/batches/{created['batch_id']}")
    assert status == 200, shown
    assert shown["status"] == "completed" and shown["credits"] == {"held": 11, "posted": 11, "returned": 0}
    assert shown["counts"] == {"delivered": 11}

    status, page = get(f"/v1/batches/{created['batch_id']}/messages", {"limit": "5"})
    assert status == 200 and [m["index"] for m in page["messages"]] == [0, 1, 2, 3, 5]
    assert page["messages"][0]["to"] == "+61******000" and page["next_cursor"] == "5"
    account, entries, holds = runtime.container().statements.partition("acct-1")
    assert check_account(account, entries, holds) == [] and account.held == 0


def test_refusals_are_4xx_and_write_nothing(queue: InMemoryBatchQueue) -> None:
    status, answer = post("/v1/batches", {"messages": messages(3)}, key=None)
    assert status == 400 and answer["error"]["code"] == "idempotency_key_required"
    status, answer = post("/v1/batches", {"messages": []})
    assert status == 422 and answer["error"]["code"] == "invalid_request"
    status, answer = post("/v1/batches", {"messages": messages(1) * 10_001})
    assert status == 422
    status, answer = post(
        "/v1/batches", {"messages": [{"to": f"+61412{i:06d}", "body": BODY} for i in range(400)]}
    )
    assert status == 402 and answer["error"]["code"] == "insufficient_credits"
    assert answer["error"]["details"]["shortfall"] == {
        "AU": 400 - runtime.container().ledger.get_account("acct-1").pools["included"]
    }
    assert queue.jobs == []
    status, answer = post("/v1/batches", {"messages": messages(2)}, key="k2")
    assert status == 202
    status, answer = post("/v1/batches", {"messages": messages(3)}, key="k2")
    assert status == 422 and answer["error"]["code"] == "idempotency_key_reused"
    status, answer = get("/v1/batches/bat_nope")
    assert status == 404
    status, answer = get(
        f"/v1/batches/{post('/v1/batches', {'messages': messages(2)}, key='k2')[1]['batch_id']}",
        account="acct-2",
    )
    assert status == 404  # another account's batch does not exist for it


def test_cancel_returns_the_unsent_and_a_second_cancel_changes_nothing(
    queue: InMemoryBatchQueue, twilio: FakeTwilioHttp
) -> None:
    status, created = post("/v1/batches", {"messages": messages(30)})
    assert status == 202
    slices = queue.take()
    queue.send([(slices[0], 0)])
    work(queue)  # one slice of ten leaves
    status, first = post(f"/v1/batches/{created['batch_id']}/cancel", key=None)
    assert status == 200 and first["cancelled"] is True and first["status"] == "cancelled"
    status, second = post(f"/v1/batches/{created['batch_id']}/cancel", key=None)
    assert status == 200 and second["cancelled"] is False
    queue.send([(job, 0) for job in slices[1:]])
    work(queue)
    deliver(twilio, "delivered")
    work(queue)
    status, shown = get(f"/v1/batches/{created['batch_id']}")
    assert len(twilio.sent) == 10
    assert shown["status"] == "cancelled" and shown["credits"] == {"held": 30, "posted": 10, "returned": 20}
    assert runtime.container().ledger.get_account("acct-1").held == 0


def test_batch_callbacks_go_through_the_status_queue_and_its_worker_applies_them_once(
    queue: InMemoryBatchQueue, twilio: FakeTwilioHttp
) -> None:
    """As a single send's: the route only verifies and queues (it answers at once, writes nothing), the status
    worker applies each status, and a redelivered one changes nothing."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="status")["QueueUrl"]
    runtime.use(runtime.container().replace(status_queue=SqsStatusQueue(url, client=sqs)))
    status, created = post("/v1/batches", {"messages": messages(12)})
    assert status == 202, created
    work(queue)
    deliver(twilio, "delivered", outcome="queued")
    page = get(f"/v1/batches/{created['batch_id']}/messages", {"status": "delivered"})[1]
    assert page["messages"] == []  # nothing applied by the route

    records = []
    while found := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        records += [sqs_record(m["MessageId"], m["Body"]) for m in found]
    assert len(records) == 12
    worker = load_function("status_worker")
    for _ in range(2):  # delivered, then delivered again
        assert worker.lambda_handler({"Records": records}, Context()) == {"batchItemFailures": []}
    work(queue)  # the settle job after the last slice
    shown = get(f"/v1/batches/{created['batch_id']}")[1]
    assert shown["status"] == "completed" and shown["credits"] == {"held": 12, "posted": 12, "returned": 0}
    assert shown["counts"] == {"delivered": 12}


def test_an_account_s_own_batch_rate_paces_its_batches(
    queue: InMemoryBatchQueue, twilio: FakeTwilioHttp
) -> None:
    """The rate is an account setting (support's PATCH), the service's BATCH_RATE_PER_SECOND when unset; a batch
    keeps the rate it was created with."""
    assert read()["batch_rate_per_second"] is None
    status, answer = patch({"batch_rate_per_second": 5})
    assert status == 200 and answer["batch_rate_per_second"] == 5 and read()["batch_rate_per_second"] == 5
    status, created = post("/v1/batches", {"messages": messages(30)})
    assert status == 202, created
    slices = [(job["indexes"][0], delay) for job, delay in queue.jobs if job["kind"] == "slice"]
    assert slices == [(0, 0), (10, 2), (20, 4)]  # ten messages every 2 s: 5 a second
    batch = runtime.container().ledger.get_batch("acct-1", created["batch_id"])
    assert batch.rate == 5
