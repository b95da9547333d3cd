"""Fixtures for handler tests: moto tables, settings from the environment, a recording Twilio HTTP client."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from moto.server import ThreadedMotoServer
from twilio.http import HttpClient
from twilio.http.response import Response

from local.moto_dynamo import create_tables, moto_client, patch_moto
from smscredits import runtime
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.adapters.memory_ledger import InMemoryLedger
from smscredits.adapters.twilio_sender import TwilioSender
from smscredits.runtime import Container
from smscredits.settings import TwilioCredentials, get_settings
from tests.conftest import TABLE, Clock
from tests.functions import admin, call

TWILIO_TOKEN = "test-twilio-token"
PUBLIC_URL = "https://api.example.com"


class FakeTwilioHttp(HttpClient):
    """Plays Twilio's API for messages.create through the real SDK; records every request it gets."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("fake-twilio"), False)
        self.requests: list[dict[str, Any]] = []
        self.mode = "accept"  # accept | reject | error429 | error500 | timeout | connect_timeout
        self.on_request: Any = None  # called with the form data before answering (to interleave a callback)
        self.num_segments = "1"  # what Twilio's answer says it counted

    def request(
        self,
        method: str,
        uri: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = False,
    ) -> Response:
        sid = "SM" + uuid.uuid4().hex  # the message Twilio creates, whether or not its answer reaches us
        self.requests.append({"method": method, "uri": uri, "data": dict(data or {}), "sid": sid})
        if self.on_request is not None:
            self.on_request(dict(data or {}))
        if self.mode == "timeout":
            raise requests.exceptions.ReadTimeout("read timed out")
        if self.mode == "connect_timeout":
            raise requests.exceptions.ConnectTimeout("connect timed out")
        if self.mode == "reject":
            body = {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}
            return Response(400, json.dumps(body))
        if self.mode == "error429":
            body = {"code": 20429, "message": "Too Many Requests", "status": 429}
            return Response(429, json.dumps(body))
        if self.mode == "error500":
            return Response(
                500, json.dumps({"code": 20500, "message": "Internal Server Error", "status": 500})
            )
        message = {
            "sid": sid,
            "status": "queued",
            "to": data["To"],
            "body": data["Body"],
            "num_segments": self.num_segments,
        }
        return Response(201, json.dumps(message))

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["uri"].endswith("/Messages.json")]

    def callback_url(self, index: int = -1) -> str:
        return str(self.sent[index]["data"]["StatusCallback"])

    def sid(self, index: int = -1) -> str:
        """The SID Twilio gave the index-th message (also when its answer was lost)."""
        return str(self.sent[index]["sid"])


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> FakeTwilioHttp:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    return FakeTwilioHttp()


def service_ledger(client: Any, clock: Clock, **options: Any) -> DynamoLedger:
    """The ledger the functions get from runtime, on moto and the test clock."""
    settings = get_settings()
    return DynamoLedger(
        TABLE,
        client=client,
        clock=clock,
        legacy_rates=settings.legacy_credits_per_message,
        sweep_grace_seconds=settings.sweep_grace_seconds,
        **options,
    )


@pytest.fixture
def service(
    request: pytest.FixtureRequest, clock: Clock, monkeypatch: pytest.MonkeyPatch, twilio: FakeTwilioHttp
) -> Iterator[Clock]:
    """Handlers wired to the fake Twilio, the test clock and a ledger: moto's DynamoDB, or the in-memory ledger
    for tests marked `memory_ledger` that read no DynamoDB item themselves (a test that asks for `dynamodb`
    always gets moto). Yields the clock."""
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("PUBLIC_BASE_URL", PUBLIC_URL)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    runtime.reset()
    credentials = TwilioCredentials("AC" + "1" * 32, TWILIO_TOKEN, "+15005550006", None)
    sender = TwilioSender(credentials, http_client=twilio)
    if request.node.get_closest_marker("memory_ledger") and "dynamodb" not in request.fixturenames:
        settings = get_settings()
        memory = InMemoryLedger(
            clock=clock,
            legacy_rates=settings.legacy_credits_per_message,
            sweep_grace_seconds=settings.sweep_grace_seconds,
        )
        runtime.use(Container(ledger=memory, statements=memory, sender=sender))
    else:
        dynamodb = request.getfixturevalue("dynamodb")
        ledger = service_ledger(dynamodb, clock)
        runtime.use(
            Container(ledger=ledger, statements=DynamoStatements(TABLE, client=dynamodb), sender=sender)
        )
    yield clock
    monkeypatch.undo()
    runtime.reset()


def create(account_id: str = "acct-1", **fields: Any) -> dict[str, Any]:
    body = {
        "account_id": account_id,
        "plan": "starter",
        "billing_anchor": "2026-01-05",
        "home_region": "AU",
        **fields,
    }
    status, answer = call("account_api", "admin_post_account", body=body, claims=admin())
    assert status == 201, answer
    return answer


def form(body: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body).items()}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's DynamoDB server in this process (local.moto_dynamo.patch_moto: one lock per request, item-level
    rollback), the tables created: for tests that drive one table from many threads, as Lambda environments
    would. The `dynamo_fidelity` fixture adds DynamoDB's latency, conflicts and throttling to it. moto keeps one
    backend per process, not per server: what one module writes stays, so each module's account ids are its own."""
    patch_moto()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = "http://{}:{}".format(*server.get_host_and_port())
    try:
        create_tables(moto_client(url))
        yield url
    finally:
        server.stop()
