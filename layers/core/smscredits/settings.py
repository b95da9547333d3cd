"""All configuration, from the environment, validated once; provider secrets fetched at run time and kept for a
while (a rotated secret reaches a warm environment within `secret_ttl_seconds`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, NamedTuple

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator

from smscredits.domain.catalog import DEFAULT_LEGACY_CREDITS_PER_MESSAGE, DEFAULT_MIGRATION_RATIO

# template.yaml's SweepGraceSeconds default (tests/unit/test_template.py holds them equal): the one default.
DEFAULT_SWEEP_GRACE_SECONDS = 3600
# template.yaml's MessageRetentionDays default: how long an ended message's body and number are kept.
DEFAULT_MESSAGE_RETENTION_DAYS = 30
DEFAULT_MESSAGE_RETENTION_SECONDS = DEFAULT_MESSAGE_RETENTION_DAYS * 86_400
# Twilio's ValidityPeriod accepts 1 to 36,000 seconds (Twilio error 90007).
TWILIO_MAX_VALIDITY_SECONDS = 36_000


def validity_period_seconds(sweep_grace_seconds: int) -> int:
    """How long Twilio may keep a message queued (ValidityPeriod), from the sweeper's grace: three quarters
    of it (2,700 s of the default 3,600), so a message the sweeper voids can no longer be sent; the last
    quarter leaves time for Twilio's `failed` callback (error 30036) to arrive and be applied first."""
    return max(1, min(TWILIO_MAX_VALIDITY_SECONDS, sweep_grace_seconds * 3 // 4))


# The placeholder older samconfig.toml files carried: never a deployment's address (refused on Lambda).
PLACEHOLDER_BASE_URL = "https://api.example.com"
LOCAL_BASE_URL = "http://127.0.0.1:3000"


class Settings(BaseModel):
    table_name: str = Field(default="CreditsTable", alias="TABLE_NAME")
    aws_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    # Set by Lambda itself: what tells a deployed function from local mode and tests.
    lambda_function_name: str | None = Field(default=None, alias="AWS_LAMBDA_FUNCTION_NAME")
    account_id_claim: str = Field(default="account_id", alias="ACCOUNT_ID_CLAIM")
    configured_base_url: str | None = Field(default=None, alias="PUBLIC_BASE_URL")
    # The API's own execute-api URL, given to functions no API request reaches (the batch worker).
    api_url: str | None = Field(default=None, alias="API_URL")
    sweep_grace_seconds: int = Field(default=DEFAULT_SWEEP_GRACE_SECONDS, alias="SWEEP_GRACE_SECONDS", ge=60)
    # An ended message (its body and full number) is deleted this long after it ended (docs/security.md).
    message_retention_days: int = Field(
        default=DEFAULT_MESSAGE_RETENTION_DAYS, alias="MESSAGE_RETENTION_DAYS", ge=1, le=3650
    )
    # Secrets Manager secrets of the providers (on AWS); in local mode the values below come from the environment.
    twilio_secret_name: str | None = Field(default=None, alias="TWILIO_SECRET_NAME")
    stripe_secret_name: str | None = Field(default=None, alias="STRIPE_SECRET_NAME")
    secret_ttl_seconds: int = Field(default=300, alias="SECRET_TTL_SECONDS", ge=0)
    twilio_auth_token: SecretStr | None = Field(default=None, alias="TWILIO_AUTH_TOKEN")
    twilio_account_sid: str = Field(default="AC" + "0" * 32, alias="TWILIO_ACCOUNT_SID")
    twilio_from_number: str = Field(default="+15005550006", alias="TWILIO_FROM_NUMBER")
    twilio_messaging_service_sid: str | None = Field(default=None, alias="TWILIO_MESSAGING_SERVICE_SID")
    stripe_webhook_secret: SecretStr | None = Field(default=None, alias="STRIPE_WEBHOOK_SECRET")
    stripe_secret_key: SecretStr = Field(default=SecretStr("sk_test_local"), alias="STRIPE_SECRET_KEY")
    # Where the Twilio / Stripe SDKs send their requests; set only in local mode (the stand-ins).
    twilio_api_base: str | None = Field(default=None, alias="TWILIO_API_BASE")
    stripe_api_base: str | None = Field(default=None, alias="STRIPE_API_BASE")
    legacy_credits_per_message: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_LEGACY_CREDITS_PER_MESSAGE), alias="LEGACY_CREDITS_PER_MESSAGE"
    )
    migration_ratio: tuple[int, int] = Field(default=DEFAULT_MIGRATION_RATIO, alias="MIGRATION_RATIO")
    provider_timeout_seconds: float = Field(default=8.0, alias="PROVIDER_TIMEOUT_SECONDS", gt=0)
    # Where the outbox publisher puts the events (docs/events.md); where due accounts fan out when more than
    # refresh_inline_max are due (without a queue, as in local mode, every due account is refreshed inline).
    event_bus_name: str | None = Field(default=None, alias="EVENT_BUS_NAME")
    refresh_queue_url: str | None = Field(default=None, alias="REFRESH_QUEUE_URL")
    refresh_inline_max: int = Field(default=25, alias="REFRESH_INLINE_MAX", ge=0)
    # Where a statement CSV too large for a Lambda response goes (a presigned link); unset in local mode.
    statement_export_bucket: str | None = Field(default=None, alias="STATEMENT_EXPORT_BUCKET")
    # Stripe Billing: which plan each subscription price id bills ({"price_...": "growth"}); a price not named
    # here is recorded and alarmed, never guessed.
    plan_prices: dict[str, str] = Field(default_factory=dict, alias="PLAN_PRICES")
    # Local mode only (never set on AWS): the file holding how far POST /__local/clock moved time on.
    local_clock_file: str | None = Field(default=None, alias="LOCAL_CLOCK_FILE")
    # Batches (docs/product.md §8b): their dispatch queue, the paced rate (messages/s per batch; 0: as fast
    # as the workers go) and how often a running batch is settled.
    batch_queue_url: str | None = Field(default=None, alias="BATCH_QUEUE_URL")
    batch_rate_per_second: float = Field(default=20, alias="BATCH_RATE_PER_SECOND", ge=0)
    batch_settle_every_seconds: int = Field(default=60, alias="BATCH_SETTLE_EVERY_SECONDS", ge=1, le=900)
    # Where Twilio's statuses (and posts a send could not finish) wait for the status worker; without it
    # (unit tests) a callback is applied at once.
    status_queue_url: str | None = Field(default=None, alias="STATUS_QUEUE_URL")

    model_config = {"populate_by_name": True}

    @field_validator("legacy_credits_per_message", "plan_prices", mode="before")
    @classmethod
    def _json_maps(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("migration_ratio", mode="before")
    @classmethod
    def _ratio(cls, value: Any) -> Any:
        if isinstance(value, str):
            numerator, _, denominator = value.partition(":")
            return int(numerator), int(denominator or 1)
        return value

    @property
    def public_base_url(self) -> str:
        """This API's public base URL outside a request (a function no HTTP request reaches): see
        `public_base_url_of`."""
        return self.public_base_url_of(None)

    def public_base_url_of(self, received_on: str | None) -> str:
        """The exact public base URL of this API (Twilio signs its callbacks over it; Checkout returns to it).
        PUBLIC_BASE_URL when configured (a custom domain, or one with an API mapping path, which API Gateway
        does not pass on); else, on Lambda, `received_on`: the https address API Gateway received this request
        on (`Request.api_base_url`), so a first deploy needs no second pass; else API_URL, the API's own
        address the template gives a function no request reaches. A function with none fails loudly (a 500,
        alarmed) rather than send callbacks and checkouts to a placeholder. Off Lambda it defaults to local
        mode's address."""
        configured = (self.configured_base_url or "").rstrip("/")
        if not self.lambda_function_name:
            return configured or LOCAL_BASE_URL
        if configured == PLACEHOLDER_BASE_URL:
            raise RuntimeError(
                f"PUBLIC_BASE_URL is the placeholder {PLACEHOLDER_BASE_URL}: set PublicBaseUrl or leave it empty"
            )
        if configured:
            return configured
        if received_on:
            return received_on
        if self.api_url:
            return self.api_url.rstrip("/")
        raise RuntimeError(
            "PUBLIC_BASE_URL is not configured and this invocation came through no API Gateway request: "
            "set the function's PUBLIC_BASE_URL (docs/deploy.md)"
        )


@cache
def get_settings() -> Settings:
    return Settings.model_validate({k: v for k, v in os.environ.items() if v != ""})


class TwilioCredentials(NamedTuple):
    account_sid: str
    auth_token: str
    from_number: str | None
    messaging_service_sid: str | None


class StripeCredentials(NamedTuple):
    secret_key: str
    webhook_secret: str


class _Kept[T]:
    """A value fetched on first use and again once it is older than the secrets' TTL."""

    def __init__(self, fetch: Callable[[], T]) -> None:
        self._fetch = fetch
        self._value: T | None = None
        self._until = 0.0

    def __call__(self) -> T:
        now = time.monotonic()
        if self._value is None or now >= self._until:
            self._value = self._fetch()
            self._until = now + get_settings().secret_ttl_seconds
        return self._value

    def cache_clear(self) -> None:
        self._value = None


def _secret(name: str) -> Mapping[str, Any]:
    """A JSON secret from Secrets Manager.

    One GetSecretValue through our botocore client: Powertools' parameters utility would import boto3 and
    s3transfer on the first request of every new environment (docs/performance.md)."""
    from smscredits.adapters import aws

    value = json.loads(aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    if not isinstance(value, Mapping):
        raise RuntimeError(f"secret {name} is not a JSON object")
    return value


def _twilio_credentials() -> TwilioCredentials:
    """From the environment in local mode (TWILIO_AUTH_TOKEN set), else from Secrets Manager."""
    settings = get_settings()
    if settings.twilio_auth_token:
        return TwilioCredentials(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            settings.twilio_from_number,
            settings.twilio_messaging_service_sid,
        )
    if not settings.twilio_secret_name:
        raise RuntimeError("TWILIO_SECRET_NAME is not configured")
    source = _secret(settings.twilio_secret_name)
    return TwilioCredentials(
        source["account_sid"],
        source["auth_token"],
        source.get("from_number"),
        source.get("messaging_service_sid"),
    )


def _stripe_credentials() -> StripeCredentials:
    """From the environment in local mode (STRIPE_WEBHOOK_SECRET set), else from Secrets Manager."""
    settings = get_settings()
    if settings.stripe_webhook_secret:
        return StripeCredentials(
            settings.stripe_secret_key.get_secret_value(), settings.stripe_webhook_secret.get_secret_value()
        )
    if not settings.stripe_secret_name:
        raise RuntimeError("STRIPE_SECRET_NAME is not configured")
    source = _secret(settings.stripe_secret_name)
    return StripeCredentials(source["secret_key"], source["webhook_secret"])


twilio_credentials = _Kept(_twilio_credentials)
stripe_credentials = _Kept(_stripe_credentials)
