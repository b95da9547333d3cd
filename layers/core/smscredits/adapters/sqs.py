"""The service's SQS queues (the refresh fan-out, Twilio's statuses, batch jobs): JSON messages sent ten to a
SendMessageBatch (its limit), each with its own delay, by one sender."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from smscredits.adapters import aws

BATCH = 10  # SendMessageBatch's limit


class SqsQueue:
    """One queue; the client is created on first use."""

    def __init__(self, queue_url: str, *, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("sqs")
        return self._client

    def send_all(self, messages: Sequence[tuple[Mapping[str, Any], int]], *, resend: bool) -> int:
        """Send each (body, delay in seconds); an entry SQS refuses is sent once more when `resend`. Returns how
        many SQS refused in the end."""
        refused = 0
        for offset in range(0, len(messages), BATCH):
            entries = [
                {"Id": str(index), "MessageBody": json.dumps(dict(body)), "DelaySeconds": delay}
                for index, (body, delay) in enumerate(messages[offset : offset + BATCH])
            ]
            for _ in range(2 if resend else 1):
                failed = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries).get(
                    "Failed", []
                )
                ids = {str(item["Id"]) for item in failed}
                entries = [entry for entry in entries if entry["Id"] in ids]
                if not entries:
                    break
            refused += len(entries)
        return refused


class SqsRefreshQueue(SqsQueue):
    """Due account ids for the refresh worker."""

    def send(self, account_ids: Sequence[str]) -> int:
        """Send every id; returns how many SQS refused (they stay due, so the next run sends them again)."""
        return self.send_all([({"account_id": account_id}, 0) for account_id in account_ids], resend=False)


class SqsStatusQueue(SqsQueue):
    """Twilio's statuses, and posts a send could not finish, for the status worker."""

    def send(self, status: Mapping[str, Any]) -> None:
        if self.send_all([(status, 0)], resend=True):
            raise RuntimeError("SQS refused a status")


class SqsBatchQueue(SqsQueue):
    """The batch dispatch queue: jobs, each visible after its own delay."""

    def send(self, jobs: Sequence[tuple[Mapping[str, Any], int]]) -> None:
        """Queue every job; one SQS still refuses after a second try fails the caller's request (its retry,
        idempotent, queues again)."""
        refused = self.send_all(jobs, resend=True)
        if refused:
            raise RuntimeError(f"SQS refused {refused} batch jobs")
