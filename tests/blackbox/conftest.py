"""Local mode as a subprocess (`python -m local.run` on free ports), and clients that drive it over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.token import mint
from tests.local_mode import LocalMode, start, stop
from tests.local_mode import free_port as free_port  # re-exported

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
SCHEDULE_SCALE = 60  # the 5-minute sweeper runs every 5 s
AU_NUMBER = "+61491570110"


class Api:
    """One caller of the HTTP API: a base URL and a bearer token."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> requests.Response:
        sent = dict(headers or {})
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        if key:
            sent["Idempotency-Key"] = key
        return requests.request(method, self.base_url + path, json=json, headers=sent, timeout=30, **options)

    def get(self, path: str, **options: Any) -> requests.Response:
        return self.call("GET", path, **options)

    def post(self, path: str, json: Any = None, **options: Any) -> requests.Response:
        return self.call("POST", path, json=json, **options)

    def send(self, to: str, body: str, key: str | None = None) -> requests.Response:
        return self.post("/v1/messages", {"to": to, "body": body}, key=key or uuid.uuid4().hex)

    def balance(self) -> dict[str, Any]:
        answer = self.get("/v1/balance")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@pytest.fixture(scope="session")
def local_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    """`python -m local.run` for the whole session; at the end Ctrl-C must stop it cleanly (exit 0)."""
    mode = start(
        tmp_path_factory.mktemp("local-mode"),
        timeout=START_TIMEOUT,
        LOCAL_SCHEDULE_SCALE=str(SCHEDULE_SCALE),
        SWEEP_GRACE_SECONDS="60",
        LOCAL_TWILIO_CALLBACK_DELAY="0.1",
    )
    try:
        yield mode
    finally:
        code = stop(mode, timeout=20)
    assert code == 0, mode.output()[-4000:]
    assert mode.output().rstrip().endswith("stopped")
    assert not mode.run_file.exists()


@pytest.fixture(scope="session")
def admin(local_mode: LocalMode) -> Api:
    return Api(local_mode.base_url, mint("support", "admin"))


@pytest.fixture(scope="session")
def as_account(local_mode: LocalMode) -> Callable[[str], Api]:
    return lambda account_id: Api(local_mode.base_url, mint(account_id))


@pytest.fixture
def new_account(admin: Api, as_account: Callable[[str], Api]) -> Callable[..., Api]:
    """A fresh account (through the support route), so a test owns its balance; returns its client."""

    def create(plan: str = "starter", home_region: str = "AU") -> Api:
        account_id = f"bb-{uuid.uuid4().hex[:12]}"
        body = {
            "account_id": account_id,
            "plan": plan,
            "home_region": home_region,
            "billing_anchor": "2026-01-05",
        }
        answer = admin.post("/v1/admin/accounts", body)
        assert answer.status_code == 201, answer.text
        return as_account(account_id)

    return create


def wait_for(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.1) -> Any:
    """Poll until `check()` is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def error_of(answer: requests.Response) -> dict[str, Any]:
    """The `error` object of the service's error shape (fails if the shape is wrong)."""
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["details"], dict)
    return dict(body["error"])
