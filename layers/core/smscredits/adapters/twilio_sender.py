"""Twilio behind the Sender port, through the official SDK. Imported only by the send path."""

from __future__ import annotations

from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from smscredits.services.ports import SendOutcome
from smscredits.settings import DEFAULT_SWEEP_GRACE_SECONDS, TwilioCredentials, validity_period_seconds

TWILIO_API = "https://api.twilio.com"


class RedirectingHttpClient(TwilioHttpClient):
    """Sends the SDK's requests to another base URL (the local stand-in); everything else is the SDK's."""

    def __init__(self, api_base: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.api_base = api_base.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API):
            url = self.api_base + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


class TwilioSender:
    """messages.create with no automatic retry: a resend after an ambiguous failure could double-send. Every
    message carries a ValidityPeriod shorter than the sweeper's grace (settings.validity_period_seconds)."""

    def __init__(
        self,
        credentials: TwilioCredentials,
        *,
        http_client: TwilioHttpClient | None = None,
        api_base: str | None = None,
        timeout: float = 8.0,
        validity_period: int = validity_period_seconds(DEFAULT_SWEEP_GRACE_SECONDS),
    ) -> None:
        if http_client is None:
            http_client = (
                RedirectingHttpClient(api_base, timeout) if api_base else TwilioHttpClient(timeout=timeout)
            )
        self.credentials = credentials
        self.validity_period = validity_period
        self.client = Client(credentials.account_sid, credentials.auth_token, http_client=http_client)

    def send(self, *, to: str, body: str, status_callback: str) -> SendOutcome:
        sender: dict[str, Any] = (
            {"messaging_service_sid": self.credentials.messaging_service_sid}
            if self.credentials.messaging_service_sid
            else {"from_": self.credentials.from_number}
        )
        try:
            message = self.client.messages.create(
                to=to,
                body=body,
                status_callback=status_callback,
                validity_period=self.validity_period,
                **sender,
            )
        except TwilioRestException as error:
            if error.status == 429 or error.status >= 500:
                # Twilio answered that it did not take the message now (too many requests, its own error):
                # the message can be tried again under the same key.
                return SendOutcome("retryable", error_code=error.code, error_message=_short(error.msg))
            # Any other 4xx (invalid or unsubscribed number, ...): Twilio did not take it, and never will.
            return SendOutcome("rejected", error_code=error.code, error_message=_short(error.msg))
        except requests.exceptions.ConnectTimeout:
            return SendOutcome("rejected", error_message="the provider could not be reached")
        except (requests.exceptions.RequestException, TwilioException):
            return SendOutcome("unknown", error_message="no answer from the provider")
        return SendOutcome(
            "accepted", sid=message.sid, status=message.status, num_segments=_count(message.num_segments)
        )


def _count(value: Any) -> int | None:
    """Twilio's num_segments (a string in its JSON); None when it gave none. A message sent through a Messaging
    Service is answered with "0" (no sender assigned yet, Twilio's Message resource reference): not a count."""
    try:
        counted = int(value)
    except (TypeError, ValueError):
        return None
    return counted or None


def _short(text: Any) -> str:
    return str(text).splitlines()[0][:200] if text else "rejected"
