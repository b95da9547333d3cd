"""The caller's Idempotency-Key (1-255 printable characters, validated once where the request is read) and
the deterministic ids and request hashes derived from it: the same key can only ever do one thing."""

from __future__ import annotations

import hashlib
import json

from smscredits.domain.errors import IdempotencyKeyRequired

MAX_LENGTH = 255


class IdempotencyKey(str):
    """A key that passed `parse`; services derive message ids and Stripe keys from it as a plain string."""

    __slots__ = ()

    @classmethod
    def parse(cls, raw: str | None) -> IdempotencyKey | None:
        """The key from a header value (surrounding blanks dropped); None when absent or blank.

        Raises IdempotencyKeyRequired when the value is too long or holds unprintable characters."""
        value = (raw or "").strip()
        if not value:
            return None
        if len(value) > MAX_LENGTH or not value.isprintable():
            raise IdempotencyKeyRequired(
                f"The Idempotency-Key must be 1-{MAX_LENGTH} printable characters.",
                {"header": "Idempotency-Key"},
            )
        return cls(value)

    @classmethod
    def require(cls, raw: str | None) -> IdempotencyKey:
        """As `parse`, for requests that cannot run without a key (sends, purchases)."""
        key = cls.parse(raw)
        if key is None:
            raise IdempotencyKeyRequired(
                f"This request needs an Idempotency-Key header (1-{MAX_LENGTH} printable characters).",
                {"header": "Idempotency-Key"},
            )
        return key


def message_id_for(account_id: str, key: str) -> str:
    """A message's id (its hold's too) from the caller's key: the same key can only ever hold once."""
    return f"msg_{_digest(account_id, key)}"


def checkout_order_id(account_id: str, key: str) -> str:
    """A Checkout order's id from the caller's key: the same key answers the same session."""
    return f"chk_{_digest(account_id, key)}"


def request_hash(request: object) -> str:
    """What was asked, whatever the key: the same key with another request is refused (idempotency_key_reused)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def _digest(account_id: str, key: str) -> str:
    return hashlib.sha256(f"{account_id}\n{key}".encode()).hexdigest()[:26]
