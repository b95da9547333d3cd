"""Configuration: what a deployed function must be given, and what local mode and tests may leave out."""

from __future__ import annotations

import pytest

from smscredits.settings import LOCAL_BASE_URL, PLACEHOLDER_BASE_URL, Settings


def settings(**environment: str) -> Settings:
    return Settings.model_validate(environment)


def test_on_lambda_without_a_request_or_configuration_the_public_base_url_is_refused_loudly_at_first_use():
    deployed = settings(AWS_LAMBDA_FUNCTION_NAME="sms-credits-send")
    assert deployed.table_name == "CreditsTable"  # everything else still reads: only its first use fails
    with pytest.raises(RuntimeError, match="PUBLIC_BASE_URL is not configured"):
        _ = deployed.public_base_url
    with pytest.raises(RuntimeError, match="placeholder"):
        _ = settings(AWS_LAMBDA_FUNCTION_NAME="fn", PUBLIC_BASE_URL=PLACEHOLDER_BASE_URL).public_base_url_of(
            "https://abc.execute-api.ap-southeast-2.amazonaws.com"
        )


def test_on_lambda_the_address_api_gateway_received_the_request_on_is_the_base_url():
    deployed = settings(AWS_LAMBDA_FUNCTION_NAME="sms-credits-send")
    received = "https://abc.execute-api.ap-southeast-2.amazonaws.com"
    assert deployed.public_base_url_of(received) == received


def test_a_function_no_request_reaches_uses_the_api_url_the_template_gives_it_unless_one_is_configured():
    worker = settings(
        AWS_LAMBDA_FUNCTION_NAME="sms-credits-batch-worker", API_URL="https://abc.execute-api.aws/"
    )
    assert worker.public_base_url == "https://abc.execute-api.aws"
    custom = settings(
        AWS_LAMBDA_FUNCTION_NAME="fn", API_URL="https://abc.execute-api.aws", PUBLIC_BASE_URL="https://x.org"
    )
    assert custom.public_base_url == "https://x.org"


def test_a_configured_public_base_url_overrides_the_request_and_loses_its_trailing_slash():
    configured = settings(AWS_LAMBDA_FUNCTION_NAME="fn", PUBLIC_BASE_URL="https://sms.example.org/")
    assert configured.public_base_url == "https://sms.example.org"
    assert configured.public_base_url_of("https://abc.execute-api.amazonaws.com") == "https://sms.example.org"


def test_off_lambda_the_public_base_url_defaults_to_local_mode():
    assert settings().public_base_url == LOCAL_BASE_URL
    assert settings().public_base_url_of("https://elsewhere.example.org") == LOCAL_BASE_URL
    assert (
        settings(PUBLIC_BASE_URL=PLACEHOLDER_BASE_URL).public_base_url == PLACEHOLDER_BASE_URL
    )  # the tests'


def test_the_region_is_lambdas_then_the_sdks_default():
    assert settings(AWS_REGION="eu-west-1", AWS_DEFAULT_REGION="us-west-2").aws_region == "eu-west-1"
    assert settings(AWS_DEFAULT_REGION="us-west-2").aws_region == "us-west-2"
    assert settings().aws_region == "us-east-1"


def test_provider_secrets_never_show_in_the_settings_repr():
    shown = repr(settings(TWILIO_AUTH_TOKEN="tok-123", STRIPE_WEBHOOK_SECRET="whsec_456"))
    assert "tok-123" not in shown and "whsec_456" not in shown
