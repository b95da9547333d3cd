"""The caller's Idempotency-Key: 1-255 printable characters, validated once where the request is read."""

from __future__ import annotations

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
