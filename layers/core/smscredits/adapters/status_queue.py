"""The status queue: Twilio's statuses, and posts a send could not finish, wait here for the status worker."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from smscredits.adapters import aws


class SqsStatusQueue:
    """Sends one status to the status worker's queue; the client is created on first use."""

    def __init__(self, queue_url: str, *, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("sqs")
        return self._client

    def send(self, status: Mapping[str, Any]) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(dict(status)))
