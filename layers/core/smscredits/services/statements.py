"""Statements: ledger entries in plain words, as JSON pages or as CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from smscredits.domain.account import LedgerRecord
from smscredits.domain.catalog import REGIONS
from smscredits.domain.errors import InvalidRequest
from smscredits.domain.ledger import ENTRY_KINDS, INCLUDED, LEGACY, OWED, PURCHASED_PREFIX
from smscredits.domain.orders import is_receipt_url

if TYPE_CHECKING:  # the ports are only types here: their module is not imported at run time
    from smscredits.services.ports import StatementExports, Statements

CSV_PAGE = 500
CSV_MAX_ROWS = 100_000
# A Lambda response carries at most 6 MB (headers included): a larger statement is exported (a link).
CSV_INLINE_MAX_BYTES = 5_000_000


def pool_label(pool: str) -> str:
    if pool == INCLUDED:
        return "included"
    if pool == LEGACY:
        return "legacy"
    region = pool.removeprefix(PURCHASED_PREFIX)
    return REGIONS[region].label if region in REGIONS else region


def _credits(n: int) -> str:
    return f"{n} credit" if abs(n) == 1 else f"{n} credits"


# Why credits came back to a pool, by entry kind.
_RETURNED = {"void": "Message not sent", "refund": "Message failed", "reinstatement": "Dispute won"}


def describe(record: LedgerRecord) -> str:
    """One line a person understands: "Monthly allowance granted — 100"."""
    ref, amount, pool = record.reference, record.amount, pool_label(record.pool)
    to = ref.get("to")
    match record.kind:
        case "grant" if ref.get("period"):
            return f"Monthly allowance granted — {amount}"
        case "grant":
            return f"Credits granted to {pool} — {amount}"
        case "purchase":
            price = f", ${int(ref['amount_cents']) / 100:.2f}" if ref.get("amount_cents") is not None else ""
            return f"Pack purchased — {amount} {pool} credits{price}"
        case "hold":
            target = f" to {to}" if to else ""
            return f"Message{target} — {_credits(-amount)} held from {pool}"
        case "post":
            return "Message sent — charged"
        case "void" | "refund" | "reinstatement":
            return f"{_RETURNED[record.kind]} — {_credits(amount)} returned to {pool}"
        case "expiry":
            return f"Unused included credits lapsed — {-amount}"
        case "adjustment":
            return f"Adjustment by support ({ref.get('reason', '')}) — {amount:+d} {pool}"
        case "clawback":
            return f"Refund or dispute — {_credits(-amount)} taken back from {pool}"
        case "migration":
            return f"Migrated to per-segment credits — {amount:+d} {pool}"
        case "late_charge" | "repayment":
            return _owed_words(record.kind, record.pool, amount)
    return f"{record.kind} — {amount:+d} {pool}"


def _owed_words(kind: str, pool: str, amount: int) -> str:
    """A late charge (a message Twilio sent after its credits came back) and the repayment of what it left owed."""
    if kind == "late_charge":
        if pool == OWED:
            return f"Charged late, no credits left to take — {_credits(amount)} owed, taken from the next credits added"
        label = pool_label(pool)
        return f"Charged late (a message sent after its credits came back) — {_credits(-amount)} from {label}"
    if pool == OWED:
        return f"Owed credits repaid — {_credits(-amount)}"
    return f"Owed credits repaid from {pool_label(pool)} — {_credits(-amount)}"


def entry_out(record: LedgerRecord) -> dict[str, Any]:
    return {
        "entry_id": record.entry_id,
        "kind": record.kind,
        "pool": record.pool,
        "amount": record.amount,
        "balance_after": record.balance_after,
        "created_at": record.created_at,
        "reference": dict(record.reference),
        "description": describe(record),
        "receipt_url": receipt_url(record),
    }


def receipt_url(record: LedgerRecord) -> str | None:
    """A purchase's Stripe receipt, kept in its reference when it was granted (older purchases have none)."""
    url = record.reference.get("receipt_url") if record.kind == "purchase" else None
    return url if is_receipt_url(url) else None


def parse_kinds(kind: str | None) -> tuple[str, ...]:
    if not kind:
        return ()
    kinds = tuple(k.strip() for k in kind.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ENTRY_KINDS]
    if unknown:
        raise InvalidRequest(f"Unknown kind {unknown[0]}.", {"kind": unknown[0], "kinds": list(ENTRY_KINDS)})
    return kinds


def parse_moment(value: str | None, name: str, *, end: bool = False) -> datetime | None:
    """An ISO date (a whole day; `to` includes it) or an ISO date-time; naive times are UTC."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1) if end else day, time.min, UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an ISO date or date-time.", {name: value}) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def statement_page(
    statements: Statements,
    account_id: str,
    *,
    limit: int,
    cursor: str | None,
    kind: str | None,
    start: str | None,
    end: str | None,
) -> dict[str, Any]:
    begin, finish = parse_moment(start, "from"), parse_moment(end, "to", end=True)
    if begin and finish and begin >= finish:
        raise InvalidRequest("`from` must be before `to`.", {"from": start, "to": end})
    records, next_cursor = statements.statement(
        account_id, limit=limit, cursor=cursor, kinds=parse_kinds(kind), start=begin, end=finish
    )
    if not records:
        # A missing account has no entries, so only an empty page pays for the existence read.
        statements.require_account(account_id)
    return {"entries": [entry_out(r) for r in records], "next_cursor": next_cursor}


def statement_csv(
    statements: Statements, account_id: str, *, kind: str | None, start: str | None, end: str | None
) -> str:
    begin, finish = parse_moment(start, "from"), parse_moment(end, "to", end=True)
    kinds = parse_kinds(kind)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["created_at", "kind", "pool", "amount", "balance_after", "description", "reference", "entry_id"]
    )
    cursor: str | None = None
    rows = 0
    while rows < CSV_MAX_ROWS:
        records, cursor = statements.statement(
            account_id, limit=CSV_PAGE, cursor=cursor, kinds=kinds, start=begin, end=finish
        )
        for r in records:
            writer.writerow(
                [
                    r.created_at.isoformat(),
                    r.kind,
                    r.pool,
                    r.amount,
                    r.balance_after,
                    describe(r),
                    json.dumps(dict(r.reference), sort_keys=True, default=str),
                    r.entry_id,
                ]
            )
        rows += len(records)
        if cursor is None:
            break
    if not rows:
        statements.require_account(account_id)  # as in statement_page: only an empty statement can hide one
    return out.getvalue()


def statement_download(
    statements: Statements,
    exports: StatementExports | None,
    account_id: str,
    *,
    kind: str | None,
    start: str | None,
    end: str | None,
) -> tuple[bytes, str | None]:
    """The CSV (body, None) when it fits a Lambda response, else (b"", the link to its export). Without an
    exports bucket (local mode, which has no response limit) it is always answered inline."""
    body = statement_csv(statements, account_id, kind=kind, start=start, end=end).encode()
    if len(body) <= CSV_INLINE_MAX_BYTES or exports is None:
        return body, None
    return b"", exports.export(account_id, f"ledger-{account_id}.csv", body)
