"""The account as the ledger sees it (plan, credit model, billing period, pools), a message's hold, an entry.

NamedTuples, as every value of the domain: immutable and typed, and defined in a fifth of the time of a frozen
dataclass, which every function pays on its cold start (docs/performance.md)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, NamedTuple

from smscredits.domain.auto_recharge import NEVER_SET_UP, AutoRecharge
from smscredits.domain.changes import NOTHING
from smscredits.domain.ledger import CreditModel, Funding
from smscredits.domain.subscriptions import Subscription

# What an account id may be (a path parameter, a token claim, the X-Account-Id header of a service token).
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# credits.low fires when a region's spendable credits fall below this, unless support sets another (§7).
DEFAULT_LOW_BALANCE_THRESHOLD = 20


class Account(NamedTuple):
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
    auto_recharge: AutoRecharge = NEVER_SET_UP
    migrated_at: datetime | None = None
    low_balance_threshold: int = DEFAULT_LOW_BALANCE_THRESHOLD
    # The low-balance alerts fired and not yet re-armed, per region (domain/events.py): "low" or "depleted".
    balance_alerts: Mapping[str, str] = NOTHING
    subscription: Subscription | None = None  # the Stripe Billing subscription that sets plan and anchor
    batch_rate_per_second: int | None = None  # its batches' paced rate; None: the service's default
    # A legacy account's owner asked support to migrate it (once): when, and who (the token's subject).
    migration_requested_at: datetime | None = None
    migration_requested_by: str | None = None


class Hold(NamedTuple):
    """The credits held for one message; it ends exactly once, posted or voided (a posted one may later be
    refunded). A hold is its message's billing state, so it has the message's id (`message_id`)."""

    account_id: str
    message_id: str
    status: str  # pending | posted | voided | refunded
    credits: int
    funding: tuple[Funding, ...]
    period_start: date  # of the included pool it drew from (for the lapse rule at refresh)
    created_at: datetime
    request_hash: str
    message: Mapping[str, Any]  # to, body, region, encoding, segments
    provider: Mapping[str, Any] = NOTHING  # twilio sid, status, error
    ended_at: datetime | None = None
    # which call of the ledger's `hold` wrote it: that call's own retry is not a duplicate
    attempt_id: str = ""
    tries: int = 1  # 2, 3...: held again after Twilio refused the earlier try as busy (nothing was sent)
    dispatching: str = ""  # the attempt that hands it to Twilio; empty: it never left (a replay may send it)


class LedgerRecord(NamedTuple):
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
