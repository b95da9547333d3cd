"""Outbox publisher (DynamoDB stream of the table, filtered to new outbox items): each event onto the bus.
A record that fails is reported alone (batch item failures) and retried; one that keeps failing goes to the
dead-letter queue (alarmed)."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from smscredits import runtime
from smscredits.adapters.dynamo.values import from_item
from smscredits.adapters.events import EventBridgePublisher
from smscredits.observability import count, instrument

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@cache
def publisher() -> EventBridgePublisher:
    bus = runtime.container().settings.event_bus_name
    if not bus:
        raise RuntimeError("EVENT_BUS_NAME is not set")
    return EventBridgePublisher(bus)


def record_handler(record: DynamoDBRecord) -> None:
    item = from_item(record.raw_event["dynamodb"]["NewImage"])
    publisher().publish(item)
    count("EventsPublished")


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
