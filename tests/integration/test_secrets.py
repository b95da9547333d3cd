"""Provider secrets from Secrets Manager through our botocore client (no Powertools parameters, no boto3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from smscredits import runtime
from smscredits.settings import get_settings, stripe_credentials, twilio_credentials


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("TWILIO_AUTH_TOKEN", "STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWILIO_SECRET_NAME", "sms/twilio")
    monkeypatch.setenv("STRIPE_SECRET_NAME", "sms/stripe")
    with mock_aws():
        runtime.reset()
        twilio_credentials.cache_clear()
        stripe_credentials.cache_clear()
        yield boto3.client("secretsmanager", region_name="us-east-1")
    runtime.reset()
    twilio_credentials.cache_clear()
    stripe_credentials.cache_clear()
    get_settings.cache_clear()


def test_credentials_are_read_once_from_their_json_secrets(secrets):
    secrets.create_secret(
        Name="sms/twilio",
        SecretString=json.dumps({"account_sid": "AC1", "auth_token": "tok", "from_number": "+15005550006"}),
    )
    secrets.create_secret(
        Name="sms/stripe", SecretString=json.dumps({"secret_key": "sk", "webhook_secret": "wh"})
    )

    twilio = twilio_credentials()
    secrets.put_secret_value(
        SecretId="sms/twilio", SecretString=json.dumps({"account_sid": "AC2", "auth_token": "x"})
    )

    assert (twilio.account_sid, twilio.auth_token, twilio.from_number) == ("AC1", "tok", "+15005550006")
    assert twilio_credentials() is twilio  # kept for SECRET_TTL_SECONDS (300 s by default)
    assert (stripe_credentials().secret_key, stripe_credentials().webhook_secret) == ("sk", "wh")


def test_a_secret_that_is_not_a_json_object_is_refused_loudly(secrets):
    secrets.create_secret(Name="sms/twilio", SecretString=json.dumps(["not", "an", "object"]))

    with pytest.raises(RuntimeError, match="not a JSON object"):
        twilio_credentials()


def test_a_rotated_secret_is_read_again_once_the_kept_one_is_older_than_its_ttl(secrets, monkeypatch):
    monkeypatch.setenv("SECRET_TTL_SECONDS", "0")
    get_settings.cache_clear()
    secrets.create_secret(
        Name="sms/twilio", SecretString=json.dumps({"account_sid": "AC1", "auth_token": "old"})
    )
    assert twilio_credentials().auth_token == "old"
    secrets.put_secret_value(
        SecretId="sms/twilio", SecretString=json.dumps({"account_sid": "AC1", "auth_token": "new"})
    )
    assert twilio_credentials().auth_token == "new"
