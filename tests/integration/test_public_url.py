"""One-pass deploy: with no PublicBaseUrl, the functions behind API Gateway use the name API Gateway received the
request on (requestContext.domainName, stage $default) for Twilio's callback URL, its signature check and
Checkout's return URLs; a configured PublicBaseUrl (a custom domain) overrides it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from smscredits import runtime
from smscredits.settings import Settings
from tests.conftest import TABLE
from tests.functions import Context, event, load_function, user
from tests.integration.conftest import TWILIO_TOKEN, FakeTwilioHttp, create
from tests.integration.test_send_path import AU, balance

API = "abc123xyz.execute-api.ap-southeast-2.amazonaws.com"


def deployed(**environment: str) -> None:
    """The container's settings as on Lambda with the template's environment (PublicBaseUrl empty: unset)."""
    settings = Settings.model_validate(
        {"AWS_LAMBDA_FUNCTION_NAME": "sms-credits-send", "TABLE_NAME": TABLE, **environment}
    )
    runtime.use(runtime.container().replace(settings=settings))


def on(request: dict[str, Any], domain: str = API, stage: str = "$default") -> dict[str, Any]:
    request["requestContext"]["domainName"] = domain
    request["requestContext"]["stage"] = stage
    return request


def invoke(function: str, request: dict[str, Any]) -> tuple[int, Any]:
    response = load_function(function).lambda_handler(request, Context())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def send(domain: str = API, stage: str = "$default") -> tuple[int, Any]:
    request = event(
        "send_post_message",
        body={"to": AU, "body": "Hello"},
        headers={"idempotency-key": "k1"},
        claims=user(),
    )
    return invoke("send", on(request, domain, stage))


def delivered(twilio: FakeTwilioHttp, domain: str = API) -> tuple[int, Any]:
    """Twilio's callback to the URL the send gave it, signed over that URL, arriving on `domain`."""
    url = twilio.callback_url()
    params = {
        "MessageSid": twilio.sid(),
        "MessageStatus": "delivered",
        "To": AU,
        "AccountSid": "AC" + "1" * 32,
    }
    query = url.split("?", 1)[1]
    request = event(
        "twilio_status_delivered",
        body=urlencode(params),
        headers={"x-twilio-signature": RequestValidator(TWILIO_TOKEN).compute_signature(url, params)},
        query=dict(pair.split("=") for pair in query.split("&")),
    )
    return invoke("twilio_status", on(request, domain))


def test_the_callback_url_is_the_api_gateway_name_and_its_signature_verifies(service, twilio):
    create()
    deployed()
    status, answer = send()
    assert status == 202, answer
    assert twilio.callback_url().startswith(f"https://{API}/webhooks/twilio/status?")
    status, answer = delivered(twilio)
    assert status == 200, answer
    assert balance()["held"] == 0 and balance()["included"]["available"] == 49


def test_a_callback_signed_for_our_url_but_received_on_another_name_is_refused(service, twilio):
    create()
    deployed()
    assert send()[0] == 202
    status, answer = delivered(twilio, domain="sms.other.example.org")
    assert (status, answer["error"]["code"]) == (403, "forbidden")


def test_a_configured_public_base_url_overrides_the_request(service, twilio):
    create()
    deployed(PUBLIC_BASE_URL="https://sms.example.org")
    assert send()[0] == 202
    assert twilio.callback_url().startswith("https://sms.example.org/webhooks/twilio/status?")


@pytest.mark.parametrize("stage", ["prod", ""])
def test_off_the_default_stage_without_configuration_nothing_is_sent(service, twilio, stage):
    """A named stage puts its name in the URL, which requestContext does not give back as a base: we refuse
    (500, alarmed) rather than guess; nothing is held or sent."""
    create()
    deployed()
    status, answer = send(stage=stage)
    assert status == 500 and answer["error"]["code"] == "internal_error"
    assert twilio.sent == [] and balance()["held"] == 0 and balance()["included"]["available"] == 50
