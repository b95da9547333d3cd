"""Logging and metrics for every function: a correlation id on each line, phone numbers masked."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit

_E164 = re.compile(r"\+(\d{1,3})(\d{3,11})(\d{3})\b")


def mask_numbers(text: str) -> str:
    """+61412345678 → +61******678 wherever a number appears in a log line."""
    return _E164.sub(lambda m: f"+{m.group(1)}{'*' * len(m.group(2))}{m.group(3)}", text)


class MaskingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: Any) -> str:
        return mask_numbers(super().serialize(log))


logger = Logger(service="sms-credits", logger_formatter=MaskingFormatter())
metrics = Metrics(namespace="SmsCredits", service="sms-credits")

F = TypeVar("F", bound=Callable[..., Any])


def instrument[F: Callable[..., Any]](handler: F) -> F:
    """Correlation id from the HTTP API request id (or the event id), metrics flushed per invocation."""
    logged = logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
    )(handler)
    measured = metrics.log_metrics(raise_on_empty_metrics=False)(logged)

    @wraps(handler)
    def wrapper(event: dict[str, Any], context: Any) -> Any:
        return measured(event, context)

    return wrapper  # type: ignore[return-value]


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
