"""The composition root: one container of the settings and the ports, each built on first use (never at import
time: cold start), and the SDK of a provider imported only by the port that needs it. Tests put their own
container in place with `use(Container(settings, ledger=..., sender=...))`."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from smscredits.adapters import aws
from smscredits.adapters.dynamo.client import dynamodb_client
from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.settings import Settings, get_settings

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import (
        EventPublisher,
        Ledger,
        Payments,
        Recharger,
        RefreshQueue,
        Sender,
        Statements,
        StatusQueue,
    )

PORTS = (
    "settings",
    "ledger",
    "statements",
    "sender",
    "payments",
    "events",
    "refresh_queue",
    "status_queue",
    "recharger",
)


class Container:
    """The settings and ports of this process. A port given to the constructor is used as it is; any other is
    built from the settings the first time it is asked for."""

    def __init__(self, settings: Settings | None = None, **ports: Any) -> None:
        unknown = set(ports) - set(PORTS)
        if unknown:
            raise TypeError(f"no such port: {', '.join(sorted(unknown))}")
        if settings is not None:
            ports["settings"] = settings
        self.__dict__.update(ports)  # what cached_property finds first

    def replace(self, **ports: Any) -> Container:
        """A container with these ports and every port this one has built so far."""
        built = {name: self.__dict__[name] for name in PORTS if name in self.__dict__}
        return Container(**{**built, **ports})

    @cached_property
    def settings(self) -> Settings:
        return get_settings()

    @cached_property
    def ledger(self) -> Ledger:
        settings = self.settings
        return DynamoLedger(
            settings.table_name,
            legacy_rates=settings.legacy_credits_per_message,
            sweep_grace_seconds=settings.sweep_grace_seconds,
        )

    @cached_property
    def statements(self) -> Statements:
        # Imported here: the send path never reads a statement, so its cold start skips the reader.
        from smscredits.adapters.dynamo.reader import DynamoStatements

        return DynamoStatements(self.settings.table_name)

    @cached_property
    def sender(self) -> Sender:
        # Imported here so that only the send path loads the Twilio SDK.
        from smscredits.adapters.twilio_sender import TwilioSender
        from smscredits.settings import twilio_credentials, validity_period_seconds

        settings = self.settings
        return TwilioSender(
            twilio_credentials(),
            api_base=settings.twilio_api_base,
            timeout=settings.provider_timeout_seconds,
            validity_period=validity_period_seconds(settings.sweep_grace_seconds),
        )

    @cached_property
    def payments(self) -> Payments:
        # Imported here so that only the Stripe paths (and a send that recharges) load the Stripe SDK.
        from smscredits.adapters.stripe_payments import StripePayments, make_client
        from smscredits.settings import stripe_credentials

        settings = self.settings
        credentials = stripe_credentials()
        client = make_client(
            credentials.secret_key,
            api_base=settings.stripe_api_base,
            timeout=settings.provider_timeout_seconds,
        )
        return StripePayments(client, credentials.webhook_secret)

    @cached_property
    def events(self) -> EventPublisher:
        from smscredits.adapters.events import EventBridgePublisher, RecordingPublisher

        bus = self.settings.event_bus_name
        return EventBridgePublisher(bus) if bus else RecordingPublisher()

    @cached_property
    def refresh_queue(self) -> RefreshQueue | None:
        from smscredits.adapters.refresh_queue import SqsRefreshQueue

        url = self.settings.refresh_queue_url
        return SqsRefreshQueue(url) if url else None

    @cached_property
    def status_queue(self) -> StatusQueue | None:
        from smscredits.adapters.status_queue import SqsStatusQueue

        url = self.settings.status_queue_url
        return SqsStatusQueue(url) if url else None

    @cached_property
    def recharger(self) -> Recharger:
        # The recharge use cases load on a send's first request, the Stripe SDK only when one charges.
        from smscredits.services.recharge import AutoRecharger

        return AutoRecharger(
            self.ledger,
            lambda: self.payments,
            self.events,
            provider_timeout=self.settings.provider_timeout_seconds,
        )


_current: Container | None = None


def container() -> Container:
    """This process's container (built on first use)."""
    global _current
    if _current is None:
        _current = Container()
    return _current


def use(replacement: Container | None) -> None:
    """Put a container in place (tests); None: build a fresh one from the environment on next use."""
    global _current
    _current = replacement


def reset() -> None:
    """Forget the container and every cached setting and client (tests switch settings between cases)."""
    from smscredits.settings import stripe_credentials, twilio_credentials

    use(None)
    get_settings.cache_clear()
    twilio_credentials.cache_clear()
    stripe_credentials.cache_clear()
    dynamodb_client.cache_clear()
    aws.session.cache_clear()
