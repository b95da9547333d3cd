"""The batch dispatch queue on SQS: jobs sent ten to a SendMessageBatch, each with its own DelaySeconds."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from smscredits.adapters import aws

BATCH = 10  # SendMessageBatch's limit


class SqsBatchQueue:
    def __init__(self, queue_url: str, *, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("sqs")
        return self._client

    def send(self, jobs: Sequence[tuple[Mapping[str, Any], int]]) -> None:
        """Queue every job; an entry SQS refuses is sent again once, then the failure is raised (the caller's
        request fails and its retry, idempotent, queues again)."""
        for offset in range(0, len(jobs), BATCH):
            entries = [
                {"Id": str(index), "MessageBody": json.dumps(dict(job)), "DelaySeconds": delay}
                for index, (job, delay) in enumerate(jobs[offset : offset + BATCH])
            ]
            for _ in range(2):
                failed = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries).get(
                    "Failed", []
                )
                refused = {str(item["Id"]) for item in failed}
                entries = [entry for entry in entries if entry["Id"] in refused]
                if not entries:
                    break
            else:
                raise RuntimeError(f"SQS refused {len(entries)} batch jobs")
