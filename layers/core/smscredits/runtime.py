"""Process-wide singletons built on first use: the store, the reader, the sender. Never at import time."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from smscredits.adapters import aws
from smscredits.adapters.dynamo import dynamodb_client
from smscredits.adapters.ledger_store import LedgerStore
from smscredits.settings import get_settings

if TYPE_CHECKING:
    from smscredits.adapters.events import EventPublisher
    from smscredits.adapters.ledger_reader import LedgerReader
    from smscredits.adapters.refresh_queue import SqsRefreshQueue
    from smscredits.adapters.stripe_payments import StripePayments
    from smscredits.services.ports import Sender


@cache
def store() -> LedgerStore:
    settings = get_settings()
    return LedgerStore(
        settings.table_name,
        legacy_rates=settings.legacy_credits_per_message,
        sweep_grace_seconds=settings.sweep_grace_seconds,
    )


@cache
def reader() -> LedgerReader:
    # Imported here: the send path never reads a partition, so its cold start skips the reader.
    from smscredits.adapters.ledger_reader import LedgerReader

    return LedgerReader(get_settings().table_name)


@cache
def sender() -> Sender:
    # Imported here so that only the send path loads the Twilio SDK.
    from smscredits.adapters.twilio_sender import TwilioSender
    from smscredits.settings import twilio_credentials

    settings = get_settings()
    return TwilioSender(
        twilio_credentials(), api_base=settings.twilio_api_base, timeout=settings.provider_timeout_seconds
    )


@cache
def payments() -> StripePayments:
    # Imported here so that only the Stripe paths (and a send that runs short) load the Stripe SDK.
    from smscredits.adapters.stripe_payments import StripePayments, make_client
    from smscredits.settings import stripe_credentials

    settings = get_settings()
    credentials = stripe_credentials()
    client = make_client(
        credentials.secret_key, api_base=settings.stripe_api_base, timeout=settings.provider_timeout_seconds
    )
    return StripePayments(client, credentials.webhook_secret)


@cache
def events() -> EventPublisher:
    from smscredits.adapters.events import EventBridgePublisher, RecordingPublisher

    bus = get_settings().event_bus_name
    return EventBridgePublisher(bus) if bus else RecordingPublisher()


@cache
def refresh_queue() -> SqsRefreshQueue | None:
    from smscredits.adapters.refresh_queue import SqsRefreshQueue

    url = get_settings().refresh_queue_url
    return SqsRefreshQueue(url) if url else None


def reset() -> None:
    """Forget every singleton (tests switch tables and settings between cases)."""
    store.cache_clear()
    reader.cache_clear()
    sender.cache_clear()
    payments.cache_clear()
    events.cache_clear()
    refresh_queue.cache_clear()
    get_settings.cache_clear()
    dynamodb_client.cache_clear()
    aws.session.cache_clear()
