"""Local mode runs each function in Lambda-like worker processes: concurrent requests run at once, a new
worker pays a cold start, and a test can kill the worker serving a request at a chosen point."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.blackbox.conftest import Api, LocalMode, error_of, wait_for

pytestmark = pytest.mark.blackbox

SILENT = "+61491570159"  # the Twilio stand-in accepts, and never calls back


def twilio(mode: LocalMode, verb: str, path: str, **body: Any) -> Any:
    answer = requests.request(verb, f"{mode.base_url}/__local/twilio{path}", json=body or None, timeout=10)
    answer.raise_for_status()
    return answer.json()


def workers(mode: LocalMode) -> list[dict[str, Any]]:
    answer = requests.get(f"{mode.base_url}/__local/workers", timeout=10)
    answer.raise_for_status()
    return list(answer.json()["workers"])


def send_in_background(api: Api, to: str, answers: list[requests.Response]) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(api.send(to, "held at Twilio")))
    thread.start()
    return thread


def test_concurrent_sends_are_served_by_separate_workers_at_once(
    local_mode: LocalMode, new_account: Callable[..., Api]
):
    api = new_account()
    twilio(local_mode, "POST", "/hold", to=SILENT)
    answers: list[requests.Response] = []
    try:
        threads = [send_in_background(api, SILENT, answers) for _ in range(3)]
        held = wait_for(lambda: len(twilio(local_mode, "GET", "/held")["held"]) == 3, timeout=60)
        busy = [w for w in workers(local_mode) if w["function"] == "SendFunction" and w["busy"]]
    finally:
        twilio(local_mode, "POST", "/release", to=SILENT)
    for thread in threads:
        thread.join(timeout=60)

    assert held, "three sends must be inside Twilio at the same time (one gateway lock would allow one)"
    assert len({w["pid"] for w in busy}) == 3
    assert [answer.status_code for answer in answers] == [202, 202, 202]
    assert "cold start: SendFunction worker" in local_mode.output()


def test_a_worker_killed_after_twilio_accepted_fails_its_request_and_is_replaced(
    local_mode: LocalMode, new_account: Callable[..., Api]
):
    api = new_account()
    twilio(local_mode, "POST", "/hold", to=SILENT)
    answers: list[requests.Response] = []
    try:
        thread = send_in_background(api, SILENT, answers)
        assert wait_for(lambda: twilio(local_mode, "GET", "/held")["held"], timeout=60)
        [victim] = [w for w in workers(local_mode) if w["function"] == "SendFunction" and w["busy"]]
        os.kill(victim["pid"], signal.SIGKILL)
    finally:
        twilio(local_mode, "POST", "/release", to=SILENT)
    thread.join(timeout=60)
    after = api.send("+61491570110", "after the crash")

    assert answers[0].status_code == 500  # what API Gateway answers when the runtime dies mid-invocation
    assert error_of(answers[0])["code"] == "internal_error"
    assert after.status_code == 202, after.text
    alive = [w["pid"] for w in workers(local_mode) if w["function"] == "SendFunction"]
    assert victim["pid"] not in alive
    assert f"SendFunction worker {victim['pid']} exited" in local_mode.output()
