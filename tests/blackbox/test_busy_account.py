"""One account under many concurrent sends, through local mode over HTTP with its worker pool and the
DynamoDB-like fidelity layer on: every answer is 202, 402 or 429, the credits charged are exactly those of the
202s, no pool goes negative and the ledger check passes; with a `failed` callback racing each post too; and a
worker killed between Twilio's acceptance and the post leaves the message posted once."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests

from local.moto_dynamo import moto_client
from local.queues import sqs_client
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.domain.audit import check_account
from tests.blackbox.conftest import Api, LocalMode, admin, wait_for
from tests.blackbox.test_workers import twilio, workers

pytestmark = pytest.mark.blackbox

__all__ = ["admin"]

DELIVERED = "+61491570110"
FAILED = "+61491570157"  # the Twilio stand-in reports `failed` 0.1 s after accepting: it races the post
SENDS = 48
CREDITS = 24  # about half of the sends


def queued_statuses(mode: LocalMode) -> dict[str, int]:
    """Statuses still in the status queue (waiting or being applied) and in its dead-letter queue."""
    sqs = sqs_client(json.loads(mode.run_file.read_text())["moto"])
    depth = {}
    for name in ("StatusQueue", "StatusDeadLetterQueue"):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        depth[name] = sum(
            int(attributes[a])
            for a in (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            )
        )
    return depth


def callbacks_of(mode: LocalMode, to: str) -> list[list[dict[str, Any]]]:
    """The status callbacks the Twilio stand-in made for each burst message to `to`, with our answers."""
    return [
        m["callbacks"]
        for m in mode.twilio_messages()
        if m["to"] == to and str(m.get("body", "")).startswith("burst message")
    ]


def ledger_of(mode: LocalMode, account_id: str) -> tuple[Any, list[str]]:
    """The account as stored and every problem the ledger check finds."""
    client = moto_client(json.loads(mode.run_file.read_text())["moto"])
    account, entries, holds = DynamoStatements("CreditsTable", client=client).partition(account_id)
    return account, check_account(account, entries, holds)


def account_with(new_account: Callable[..., Api], admin_api: Api, credits: int) -> tuple[Api, str]:
    api = new_account()
    account_id = api.balance()["account_id"]
    change = {"pool": "included", "credits": credits - 50, "reason": "test: about half of the sends"}
    answer = admin_api.post(f"/v1/admin/accounts/{account_id}/adjustments", change, key=f"{account_id}-half")
    assert answer.status_code == 200, answer.text
    return api, account_id


def burst(api: Api, to: str) -> list[requests.Response]:
    answers: list[requests.Response] = []
    lock, start = threading.Lock(), threading.Barrier(SENDS)

    def one(n: int) -> None:
        start.wait()
        # 48 callers share 8 workers (LOCAL_FUNCTION_CONCURRENCY) on a small machine: a generous timeout
        answer = requests.post(
            f"{api.base_url}/v1/messages",
            json={"to": to, "body": f"burst message {n}"},
            headers={"Authorization": f"Bearer {api.token}", "Idempotency-Key": f"burst-{n}"},
            timeout=300,
        )
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(SENDS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


@pytest.mark.parametrize(
    ("to", "returned"),
    [
        (DELIVERED, False),
        (FAILED, True),
    ],
    ids=["delivered", "failed"],
)
def test_48_concurrent_sends_on_one_account_stay_exact(
    local_mode: LocalMode, new_account: Callable[..., Api], admin: Api, to: str, returned: bool
) -> None:
    api, account_id = account_with(new_account, admin, CREDITS)
    answers = burst(api, to)
    statuses = [answer.status_code for answer in answers]
    assert len(answers) == SENDS and set(statuses) <= {202, 402, 429}, [a.text for a in answers]
    accepted = statuses.count(202)
    # A failed message's credits come back within 0.1 s, so later sends of the burst may use them again.
    assert accepted > 0 and (returned or accepted <= CREDITS)
    for answer in answers:
        if answer.status_code == 429:
            assert answer.headers["Retry-After"] and answer.json()["error"]["code"] == "busy"

    callbacks = 1 if returned else 2  # the stand-in's `failed`, or `sent` then `delivered`

    def settled() -> Any:
        # Every callback made and every queued status applied: a hold ends (held 0) before its `failed` status,
        # queued behind it, refunds it, so the held credits alone do not say the account is settled.
        made = callbacks_of(local_mode, to)
        if any(len(each) < callbacks for each in made) or queued_statuses(local_mode)["StatusQueue"]:
            return None
        account, problems = ledger_of(local_mode, account_id)
        return (account, problems, made) if account.held == 0 else None

    found = wait_for(settled, timeout=90, every=0.5)
    assert found, "every callback is applied and every hold ends"
    account, problems, made = found
    assert len(made) == accepted  # Twilio got each accepted message once, and no other
    if returned:
        # Twilio never retries a callback: one not answered within its 15 s leaves a failed message charged.
        lost = [c for each in made for c in each if c["response"] != 200]
        assert lost == [], "callbacks not answered in 15 s (a worker too slow to start on this machine?)"
    assert queued_statuses(local_mode)["StatusDeadLetterQueue"] == 0
    assert problems == []
    assert all(value >= 0 for value in account.pools.values())
    charged = 0 if returned else accepted  # a failed message's credits come back (refund or void)
    assert account.pools["included"] == CREDITS - charged


def test_a_worker_killed_between_twilios_acceptance_and_the_post_leaves_the_message_posted_once(
    local_mode: LocalMode, new_account: Callable[..., Api]
) -> None:
    api = new_account()
    account_id = api.balance()["account_id"]
    twilio(local_mode, "POST", "/hold", to=DELIVERED)
    answers: list[requests.Response] = []
    try:
        thread = threading.Thread(target=lambda: answers.append(api.send(DELIVERED, "killed", key="kill-1")))
        thread.start()
        assert wait_for(lambda: twilio(local_mode, "GET", "/held")["held"], timeout=60)
        [victim] = [w for w in workers(local_mode) if w["function"] == "SendFunction" and w["busy"]]
        os.kill(victim["pid"], signal.SIGKILL)
    finally:
        twilio(local_mode, "POST", "/release", to=DELIVERED)
    thread.join(timeout=60)
    assert answers[0].status_code == 500  # what API Gateway answers when the runtime dies mid-invocation

    posted = wait_for(lambda: ledger_of(local_mode, account_id)[0].held == 0, timeout=30)
    assert posted, "the status callback posts the message Twilio accepted"
    account, problems = ledger_of(local_mode, account_id)
    assert problems == [] and account.pools["included"] == 49
    replay = api.send(DELIVERED, "killed", key="kill-1")  # the caller retries: the answer, never a resend
    assert replay.status_code == 202 and replay.json()["status"] == "sent"
    sent = [m for m in local_mode.twilio_messages() if m.get("body") == "killed"]
    assert len(sent) == 1
