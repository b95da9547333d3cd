"""The account as the ledger sees it: plan, credit model, billing period and the pools' balances."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from smscredits.domain.ledger import CreditModel, Funding


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    plan: str
    credit_model: CreditModel
    home_region: str
    billing_anchor: date
    created_at: datetime
    period_start: date
    next_refresh_at: datetime
    allowance: int  # what the current period granted (an upgrade grants the difference)
    pools: Mapping[str, int]
    held: int
    version: int  # every credit movement moves it on by one; writes are pinned to it
    smart_encoding: bool = False
    pending_plan: str | None = None  # a downgrade waiting for the next refresh
    auto_recharge: Mapping[str, Any] = field(default_factory=dict)
    migrated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation for one message; it ends exactly once, posted or voided. Its id is the message id."""

    account_id: str
    hold_id: str
    status: str  # pending | posted | voided
    credits: int
    funding: tuple[Funding, ...]
    period_start: date  # of the included pool it drew from (for the lapse rule at refresh)
    created_at: datetime
    request_hash: str
    message: Mapping[str, Any]  # to, body, region, encoding, segments
    provider: Mapping[str, Any] = field(default_factory=dict)  # twilio sid, status, error
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One immutable ledger entry as stored and listed."""

    entry_id: str
    account_id: str
    kind: str
    pool: str
    amount: int
    balance_after: int
    created_at: datetime
    op_id: str
    reference: Mapping[str, Any]
