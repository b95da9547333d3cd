"""Twilio's message statuses: the order they happen in, which are final, and which give the credits back.

Callbacks arrive late and out of order (docs/product.md §8): a message's recorded status only moves forward,
and once it is final nothing changes it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROGRESS = {"accepted": 0, "queued": 1, "sending": 2, "sent": 3}
FINAL_STATUSES = frozenset({"delivered", "undelivered", "read", "failed", "canceled"})
# Twilio does not charge these, so the credits come back; `undelivered` stays charged (the carrier was tried).
RETURNED_STATUSES = frozenset({"failed", "canceled"})
# Final statuses Twilio bills: one that arrives for a voided hold charges it after all.
CHARGED_FINAL_STATUSES = FINAL_STATUSES - RETURNED_STATUSES
_FINAL = len(PROGRESS)


def rank(status: Any) -> int:
    """Where a status stands: progress statuses in order, every final one after them, anything else before."""
    return _FINAL if status in FINAL_STATUSES else PROGRESS.get(status, -1)


def recorded_status(provider: Mapping[str, Any]) -> str | None:
    """Twilio's last status recorded for a message (holds posted by older code kept the create answer's as
    `status`)."""
    status = provider.get("provider_status") or provider.get("status")
    return str(status) if status else None


def settled_by(status: str) -> frozenset[str]:
    """The recorded statuses a write of `status` must not overwrite: the ones at or past it, and the final ones."""
    return FINAL_STATUSES | {known for known, position in PROGRESS.items() if position >= rank(status)}


def public_status(status: str, provider: Mapping[str, Any]) -> str:
    """A message's status as the API shows it, from its hold's: pending, sent, failed or rejected."""
    if status == "pending":
        return "pending"
    if status == "posted":
        return "sent"
    if status == "refunded":
        return "failed"
    return "rejected" if provider.get("result") == "rejected" else "failed"
