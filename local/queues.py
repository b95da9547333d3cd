"""template.yaml's SQS queues on moto's SQS, and its SQS event sources as pollers that invoke their function
through the worker pool, as Lambda's event source mapping does: a batch of up to BatchSize messages, the
records the function reports failed (ReportBatchItemFailures) or the whole batch if it raised stay in the
queue and come back after the visibility timeout, and a message received maxReceiveCount times moves to the
dead-letter queue of its RedrivePolicy, where a test or a person can read it (moto's SQS, same endpoint).

Locally the visibility timeout is LOCAL_SQS_VISIBILITY_SECONDS (default 2) instead of the template's 180 s,
so that a retry comes within seconds; up to MaximumConcurrency batches of a source run at once."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.template import functions, resources

log = logging.getLogger("local.queues")

Invoke = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class EventSource:
    function: str
    queue: str  # the queue's logical id
    batch_size: int
    concurrency: int


def sqs_client(endpoint_url: str) -> Any:
    from botocore.session import get_session

    return get_session().create_client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


# Queues whose work local mode does inline instead: the refresh fan-out (REFRESH_QUEUE_URL unset), so that
# POST /__local/clock answers what the refresh did.
INLINE = ("RefreshQueue",)


def create_queues(sqs: Any) -> dict[str, str]:
    """Create every queue template.yaml declares (dead-letter queues first) but the INLINE ones; returns logical
    id → URL."""
    declared = resources("AWS::SQS::Queue")
    visibility = os.environ.get("LOCAL_SQS_VISIBILITY_SECONDS") or "2"
    urls: dict[str, str] = {}
    for name in sorted(declared, key=lambda n: "RedrivePolicy" in declared[n]["Properties"]):
        if name in INLINE:
            continue
        attributes = {"VisibilityTimeout": visibility}
        redrive = declared[name]["Properties"].get("RedrivePolicy")
        if redrive:
            target = urls[redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]]
            arn = sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": str(redrive["maxReceiveCount"])}
            )
        urls[name] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return urls


def event_sources() -> list[EventSource]:
    found = []
    for name, res in functions().items():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] == "SQS" and event["Properties"]["Queue"]["Fn::GetAtt"][0] not in INLINE:
                props = event["Properties"]
                concurrency = int(props.get("ScalingConfig", {}).get("MaximumConcurrency", 2))
                found.append(
                    EventSource(name, props["Queue"]["Fn::GetAtt"][0], int(props["BatchSize"]), concurrency)
                )
    return found


class Pollers:
    """Polls each event source's queue and invokes its function with each batch, until stopped."""

    def __init__(self, sources: list[EventSource], urls: dict[str, str], invoke: Invoke, sqs: Any) -> None:
        self.sources, self.urls, self.invoke, self.sqs = sources, urls, invoke, sqs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for source in self.sources:
            for index in range(source.concurrency):
                thread = threading.Thread(
                    target=self._poll, args=(source,), name=f"sqs-{source.function}-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _poll(self, source: EventSource) -> None:
        url = self.urls[source.queue]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        while not self._stop.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=source.batch_size,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                ).get("Messages", [])
            except Exception:
                log.exception("cannot receive from %s", source.queue)
                self._stop.wait(1)
                continue
            if messages:
                self._deliver(source, url, arn, messages)

    def _deliver(self, source: EventSource, url: str, arn: str, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [_record(message, arn) for message in messages]}
        try:
            result = self.invoke(source.function, event)
        except Exception as error:  # the whole batch comes back after its visibility timeout
            log.warning("%s failed a batch of %d: %s", source.function, len(messages), error)
            return
        failed = {item["itemIdentifier"] for item in (result or {}).get("batchItemFailures", [])}
        if failed:
            log.info(
                "%s: %d of %d records back to %s", source.function, len(failed), len(messages), source.queue
            )
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    """An SQS record as Lambda's event source mapping delivers it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }
