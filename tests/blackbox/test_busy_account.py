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
        pytest.param(
            FAILED,
            True,
            marks=pytest.mark.xfail(
                reason="open: in one run 4 of the failed messages stayed charged (ledger check clean); "
                "not yet diagnosed, see the i14-send report",
                strict=False,
            ),
        ),
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

    def settled() -> Any:
        account, problems = ledger_of(local_mode, account_id)
        return (account, problems) if account.held == 0 else None

    found = wait_for(settled, timeout=60)
    assert found, "every hold ends (posted by the send or its callback, or voided by the failed callback)"
    account, problems = found
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
