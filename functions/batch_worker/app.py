"""Batch worker (SQS): sends a slice of a batch, settles a batch, or cancels its unsent messages; a failed
job alone goes back to the queue (and, after its retries, to the dead-letter queue)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from smscredits import runtime
from smscredits.observability import instrument, logger
from smscredits.services import batches

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    ports = runtime.container()
    settings = ports.settings
    job = json.loads(record.body)
    outcome = batches.handle(
        job,
        ledger=ports.ledger,
        messages=ports.batch_messages,
        queue=ports.batch_queue,
        sender=ports.sender,
        base_url=settings.public_base_url,
        pacing=batches.Pacing(
            settings.batch_rate_per_second, settings.batch_settle_every_seconds, settings.sweep_grace_seconds
        ),
    )
    logger.info(
        "batch job", extra={"kind": job.get("kind"), "batch_id": job.get("batch_id"), "outcome": outcome}
    )


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
