"""The refresh fan-out queue: due account ids go to SQS in batches of ten (SendMessageBatch's limit)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from smscredits.adapters import aws

BATCH = 10


class SqsRefreshQueue:
    """Sends account ids to the refresh worker's queue; the client is created on first use."""

    def __init__(self, queue_url: str, *, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("sqs")
        return self._client

    def send(self, account_ids: Sequence[str]) -> int:
        """Send every id; returns how many SQS refused (they stay due, so the next run sends them again)."""
        refused = 0
        for offset in range(0, len(account_ids), BATCH):
            chunk = account_ids[offset : offset + BATCH]
            entries = [
                {"Id": str(index), "MessageBody": json.dumps({"account_id": account_id})}
                for index, account_id in enumerate(chunk)
            ]
            response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            refused += len(response.get("Failed", []))
        return refused
