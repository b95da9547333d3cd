"""The batch queue in local mode: the template's BatchQueue made on moto's SQS (which honours each message's
DelaySeconds), and pollers that hand each job to the BatchWorkerFunction through the worker pool as Lambda's
SQS event source does: one record per invocation (the template's BatchSize), at most MaximumConcurrency
at once, a job whose record failed left for its visibility timeout to expire and come back.

Only the batch queue runs locally; the refresh fan-out stays inline (REFRESH_QUEUE_URL unset), so that
`POST /__local/clock` still answers what the refresh did."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from local.template import function_properties, functions, load

log = logging.getLogger("local.queues")

LOCAL_QUEUES = ("BatchQueue",)
ACCOUNT = "123456789012"
REGION = "us-east-1"

Invoke = Callable[[str, dict[str, Any]], Any]


def queue_url(moto_url: str, name: str) -> str:
    return f"{moto_url}/{ACCOUNT}/{name}"


def sqs_client(moto_url: str) -> Any:
    from botocore.session import get_session

    return get_session().create_client(
        "sqs",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def consumers() -> list[tuple[str, str, int, int]]:
    """(queue, function, concurrency, visibility timeout) of each local queue's SQS event source."""
    found = []
    queues = load()["Resources"]
    for function in functions():
        for source in function_properties(function).get("Events", {}).values():
            if source["Type"] != "SQS":
                continue
            queue = str((source["Properties"]["Queue"].get("Fn::GetAtt") or [""])[0])  # !GetAtt Q.Arn
            if queue not in LOCAL_QUEUES:
                continue
            concurrency = int(source["Properties"].get("ScalingConfig", {}).get("MaximumConcurrency", 2))
            visibility = int(queues[queue]["Properties"].get("VisibilityTimeout", 30))
            found.append((queue, function, concurrency, visibility))
    return found


class Pollers:
    """Threads that receive from the local queues and invoke their functions until stopped."""

    def __init__(self, moto_url: str, invoke: Invoke) -> None:
        self.moto_url = moto_url
        self.invoke = invoke
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def create_queues(self) -> None:
        client = sqs_client(self.moto_url)
        for queue, _, _, visibility in consumers():
            client.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": str(visibility)})

    def start(self) -> None:
        for queue, function, concurrency, _ in consumers():
            for number in range(concurrency):
                thread = threading.Thread(
                    target=self._poll, args=(queue, function), name=f"queue-{queue}-{number}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _poll(self, queue: str, function: str) -> None:
        client = sqs_client(self.moto_url)
        url = queue_url(self.moto_url, queue)
        while not self._stop.is_set():
            try:
                answer = client.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1, AttributeNames=["All"]
                )
            except Exception:  # moto stopping, or a hiccup: try again shortly
                if self._stop.wait(1):
                    return
                continue
            for message in answer.get("Messages", []):
                self._deliver(client, url, queue, function, message)

    def _deliver(self, client: Any, url: str, queue: str, function: str, message: dict[str, Any]) -> None:
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
            "awsRegion": REGION,
        }
        try:
            result = self.invoke(function, {"Records": [record]})
        except Exception:
            log.exception(
                "%s failed on a %s job; it comes back after its visibility timeout", function, queue
            )
            return
        failed = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
        if failed:
            log.warning(
                "%s reported a %s job failed; it comes back after its visibility timeout", function, queue
            )
            return
        client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
