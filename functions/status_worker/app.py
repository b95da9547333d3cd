"""Status worker (SQS): applies each queued Twilio status (or a post a send could not finish) to its message, a
single send's or a batch's, exactly once (their conditional writes); a status that cannot land now alone goes
back to the queue."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from smscredits import runtime
from smscredits.domain.errors import MalformedProviderEvent, NotFound, SidMismatch
from smscredits.observability import count, instrument, logger
from smscredits.services.statuses import apply_status, describe

# A batch whose every status met a busy balance is contention, not a bug: its records go back to the queue as
# reported failures, not as a Lambda error (which the Errors alarm would page about).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    status = json.loads(record.body)
    ports = runtime.container()
    try:
        outcome = apply_status(ports.ledger, lambda: ports.batch_messages, status)
    except (SidMismatch, MalformedProviderEvent, NotFound) as refused:
        # No retry changes these (settlement logged and counted them): dropped, not dead-lettered.
        logger.warning("queued status refused", extra={"code": refused.code, "message_id": describe(status)})
        count("StatusRefused")
        return
    logger.info("status applied", extra={"message_id": describe(status), "outcome": outcome})


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
