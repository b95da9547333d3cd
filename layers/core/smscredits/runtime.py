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
        BatchMessages,
        BatchQueue,
        Clock,
        CustomerDirectory,
        Ledger,
        Payments,
        Recharger,
        RefreshQueue,
        Sender,
        StatementExports,
        Statements,
        StatusQueue,
    )

PORTS = (
    "settings",
    "clock",
    "ledger",
    "statements",
    "customers",
    "sender",
    "payments",
    "refresh_queue",
    "status_queue",
    "recharger",
    "statement_exports",
    "batch_messages",
    "batch_queue",
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
    def clock(self) -> Clock:
        from smscredits.adapters.clock import OffsetClock, utc_now

        path = self.settings.local_clock_file
        return OffsetClock(path) if path else utc_now

    @cached_property
    def ledger(self) -> Ledger:
        settings = self.settings
        return DynamoLedger(
            settings.table_name,
            clock=self.clock,
            legacy_rates=settings.legacy_credits_per_message,
            sweep_grace_seconds=settings.sweep_grace_seconds,
            message_retention_seconds=settings.message_retention_days * 86_400,
        )

    @cached_property
    def statements(self) -> Statements:
        # Imported here: the send path never reads a statement, so its cold start skips the reader.
        from smscredits.adapters.dynamo.reader import DynamoStatements

        return DynamoStatements(self.settings.table_name)

    @cached_property
    def customers(self) -> CustomerDirectory:
        from smscredits.adapters.dynamo.customers import DynamoCustomers

        return DynamoCustomers(self.settings.table_name)

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
    def statement_exports(self) -> StatementExports | None:
        from smscredits.adapters.statement_exports import S3StatementExports

        bucket = self.settings.statement_export_bucket
        return S3StatementExports(bucket) if bucket else None

    @cached_property
    def refresh_queue(self) -> RefreshQueue | None:
        from smscredits.adapters.sqs import SqsRefreshQueue

        url = self.settings.refresh_queue_url
        return SqsRefreshQueue(url) if url else None

    @cached_property
    def status_queue(self) -> StatusQueue | None:
        from smscredits.adapters.sqs import SqsStatusQueue

        url = self.settings.status_queue_url
        return SqsStatusQueue(url) if url else None

    @cached_property
    def recharger(self) -> Recharger:
        # The recharge use cases load on a send's first request, the Stripe SDK only when one charges.
        from smscredits.services.recharge import AutoRecharger

        return AutoRecharger(
            self.ledger, lambda: self.payments, provider_timeout=self.settings.provider_timeout_seconds
        )

    @cached_property
    def batch_messages(self) -> BatchMessages:
        from smscredits.adapters.dynamo.batches import DynamoBatchMessages

        return DynamoBatchMessages(self.settings.table_name)

    @cached_property
    def batch_queue(self) -> BatchQueue:
        from smscredits.adapters.sqs import SqsBatchQueue

        url = self.settings.batch_queue_url
        if not url:
            raise RuntimeError("BATCH_QUEUE_URL is not set: batches cannot be dispatched")
        return SqsBatchQueue(url)


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
