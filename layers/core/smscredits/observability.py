"""Logging and metrics for every function: a correlation id on each line, phone numbers masked."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit

from smscredits.domain.regions import mask_number

# An E.164 number, also URL-encoded (%2B) as in Twilio's form bodies; 7+ digits so "+00:00" offsets stay.
_E164 = re.compile(r"(\+|%2B)(\d{7,})", re.IGNORECASE)

# SDK loggers that write request parameters (numbers, bodies, Stripe metadata) at INFO/DEBUG: never below WARNING.
for _name in ("twilio.http_client", "stripe", "botocore", "boto3", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def mask_numbers(text: str) -> str:
    """+61412345678 → +61******678 wherever a number appears in a log line (the same form as mask_number)."""

    def masked(match: re.Match[str]) -> str:
        return match.group(1) + mask_number("+" + match.group(2))[1:]

    return _E164.sub(masked, text)


class MaskingFormatter(LambdaPowertoolsFormatter):
    """Masks the whole serialized line, so messages, extra keys and exception tracebacks are all covered."""

    def serialize(self, log: Any) -> str:
        return mask_numbers(super().serialize(log))


logger = Logger(service="sms-credits", logger_formatter=MaskingFormatter())
metrics = Metrics(namespace="SmsCredits", service="sms-credits")


def correlation_id(event: Any, context: Any) -> str:
    """The HTTP API request id; else the EventBridge/Scheduler event id; else the Lambda request id (SQS)."""
    if isinstance(event, Mapping):
        request = event.get("requestContext")
        if isinstance(request, Mapping) and request.get("requestId"):
            return str(request["requestId"])
        if event.get("id"):
            return str(event["id"])
    return str(getattr(context, "aws_request_id", "") or "unknown")


def instrument[F: Callable[..., Any]](handler: F) -> F:
    """Correlation id on every log line (and on the EMF record), metrics flushed per invocation."""

    @wraps(handler)
    def correlated(event: Any, context: Any) -> Any:
        correlation = correlation_id(event, context)
        logger.set_correlation_id(correlation)
        metrics.add_metadata(key="correlation_id", value=correlation)
        return handler(event, context)

    logged = logger.inject_lambda_context(clear_state=True)(correlated)
    return metrics.log_metrics(raise_on_empty_metrics=False)(logged)


def count(name: str, value: int = 1) -> None:
    """One metric datapoint (unit Count) in the SmsCredits namespace, flushed when the handler returns."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
