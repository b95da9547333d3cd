"""Configuration from the environment, validated once; secrets fetched at run time and cached."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, Field, field_validator

from smscredits.domain.catalog import DEFAULT_LEGACY_CREDITS_PER_MESSAGE, DEFAULT_MIGRATION_RATIO


class Settings(BaseModel):
    table_name: str = Field(default="CreditsTable", alias="TABLE_NAME")
    account_id_claim: str = Field(default="account_id", alias="ACCOUNT_ID_CLAIM")
    public_base_url: str = Field(default="http://127.0.0.1:3000", alias="PUBLIC_BASE_URL")
    sweep_grace_seconds: int = Field(default=3600, alias="SWEEP_GRACE_SECONDS", ge=60)
    twilio_secret_name: str | None = Field(default=None, alias="TWILIO_SECRET_NAME")
    stripe_secret_name: str | None = Field(default=None, alias="STRIPE_SECRET_NAME")
    # Where the Twilio / Stripe SDKs send their requests; set only in local mode (the stand-ins).
    twilio_api_base: str | None = Field(default=None, alias="TWILIO_API_BASE")
    stripe_api_base: str | None = Field(default=None, alias="STRIPE_API_BASE")
    legacy_credits_per_message: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_LEGACY_CREDITS_PER_MESSAGE), alias="LEGACY_CREDITS_PER_MESSAGE"
    )
    migration_ratio: tuple[int, int] = Field(default=DEFAULT_MIGRATION_RATIO, alias="MIGRATION_RATIO")
    provider_timeout_seconds: float = Field(default=8.0, alias="PROVIDER_TIMEOUT_SECONDS", gt=0)
    # The refresh: where allowance.refreshed goes, and where due accounts fan out when more than
    # refresh_inline_max are due (without a queue, as in local mode, every due account is refreshed inline).
    event_bus_name: str | None = Field(default=None, alias="EVENT_BUS_NAME")
    refresh_queue_url: str | None = Field(default=None, alias="REFRESH_QUEUE_URL")
    refresh_inline_max: int = Field(default=25, alias="REFRESH_INLINE_MAX", ge=0)

    model_config = {"populate_by_name": True}

    @field_validator("legacy_credits_per_message", mode="before")
    @classmethod
    def _json_rates(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("migration_ratio", mode="before")
    @classmethod
    def _ratio(cls, value: Any) -> Any:
        if isinstance(value, str):
            numerator, _, denominator = value.partition(":")
            return int(numerator), int(denominator or 1)
        return value

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


@cache
def get_settings() -> Settings:
    return Settings.model_validate({k: v for k, v in os.environ.items() if v != ""})


@dataclass(frozen=True)
class TwilioCredentials:
    account_sid: str
    auth_token: str
    from_number: str | None
    messaging_service_sid: str | None


@dataclass(frozen=True)
class StripeCredentials:
    secret_key: str
    webhook_secret: str


def _secret(name: str) -> Mapping[str, Any]:
    """A JSON secret from Secrets Manager, read once per process (the callers cache it).

    One GetSecretValue through our botocore client: Powertools' parameters utility would import boto3 and
    s3transfer on the first request of every new environment (docs/performance.md)."""
    from smscredits.adapters import aws

    value = json.loads(aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    if not isinstance(value, Mapping):
        raise RuntimeError(f"secret {name} is not a JSON object")
    return value


@cache
def twilio_credentials() -> TwilioCredentials:
    """From the environment in local mode (TWILIO_AUTH_TOKEN set), else from Secrets Manager."""
    if os.environ.get("TWILIO_AUTH_TOKEN"):
        source: Mapping[str, Any] = {
            "account_sid": os.environ.get("TWILIO_ACCOUNT_SID", "AC" + "0" * 32),
            "auth_token": os.environ["TWILIO_AUTH_TOKEN"],
            "from_number": os.environ.get("TWILIO_FROM_NUMBER", "+15005550006"),
            "messaging_service_sid": os.environ.get("TWILIO_MESSAGING_SERVICE_SID"),
        }
    else:
        name = get_settings().twilio_secret_name
        if not name:
            raise RuntimeError("TWILIO_SECRET_NAME is not configured")
        source = _secret(name)
    return TwilioCredentials(
        account_sid=source["account_sid"],
        auth_token=source["auth_token"],
        from_number=source.get("from_number"),
        messaging_service_sid=source.get("messaging_service_sid"),
    )


@cache
def stripe_credentials() -> StripeCredentials:
    """From the environment in local mode (STRIPE_WEBHOOK_SECRET set), else from Secrets Manager."""
    if os.environ.get("STRIPE_WEBHOOK_SECRET"):
        source: Mapping[str, Any] = {
            "secret_key": os.environ.get("STRIPE_SECRET_KEY", "sk_test_local"),
            "webhook_secret": os.environ["STRIPE_WEBHOOK_SECRET"],
        }
    else:
        name = get_settings().stripe_secret_name
        if not name:
            raise RuntimeError("STRIPE_SECRET_NAME is not configured")
        source = _secret(name)
    return StripeCredentials(secret_key=source["secret_key"], webhook_secret=source["webhook_secret"])
