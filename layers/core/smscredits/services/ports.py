"""The ports the services depend on: how a message leaves (Sender) and what came back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What the provider said to `messages.create`.

    accepted: it took the message (sid known). rejected: it certainly did not send (4xx). unknown: we
    cannot tell (timeout after the request left, 5xx) - never re-sent; the callback or the sweeper decides.
    """

    result: Literal["accepted", "rejected", "unknown"]
    sid: str | None = None
    status: str | None = None
    error_code: int | None = None
    error_message: str | None = None


class Sender(Protocol):
    def send(self, *, to: str, body: str, status_callback: str) -> SendOutcome: ...
