"""Refresh worker (SQS): refreshes each account of a batch; failed records alone go back to the queue."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from smscredits import runtime
from smscredits.observability import instrument
from smscredits.services.refresh import refresh_account

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    ports = runtime.container()
    refresh_account(ports.ledger, json.loads(record.body)["account_id"], ports.ledger.clock())


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
