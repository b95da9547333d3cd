"""Request and response models of the account API (v1). Requests forbid unknown fields and coercion."""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictInt, StrictStr

from smscredits.domain.catalog import PLANS, REGION_INPUTS
from smscredits.schemas.base import Model, Query, Request
from smscredits.schemas.messages import FundingOut

# Plans and regions come from the catalog: adding one is one row there.
_REGIONS = "|".join(REGION_INPUTS)
AccountId = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
PlanName = Literal[*PLANS]  # type: ignore[valid-type]
PoolName = Annotated[StrictStr, Field(pattern=rf"^(included|legacy|purchased:({_REGIONS}))$")]


class MessageParams(Request):
    message_id: StrictStr


class AccountParams(Request):
    account_id: AccountId


class LedgerCsvQuery(Query):
    kind: Annotated[str | None, Field(max_length=200)] = None
    from_: Annotated[str | None, Field(alias="from", max_length=40)] = None
    to: Annotated[str | None, Field(max_length=40)] = None


class LedgerQuery(LedgerCsvQuery):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str | None, Field(max_length=512)] = None


class SmartEncodingOut(Model):
    encoding: str
    segments: int


class QuoteResponse(Model):
    region: str
    encoding: str
    segments: int
    credits: int
    characters: int
    non_gsm_characters: list[str]
    smart_encoding: SmartEncodingOut
    funding: list[FundingOut]
    affordable: bool


class MessageResponse(Model):
    message_id: str
    status: str  # pending | sent | failed | refunded
    billing: str  # held | charged | returned | refunded
    to: str
    region: str
    encoding: str
    segments: int
    credits: int
    funding: list[FundingOut]
    created_at: datetime
    ended_at: datetime | None = None
    provider_status: str | None = None
    error: dict[str, Any] | None = None


class IncludedOut(Model):
    available: int
    allowance: int
    period_start: date
    resets_at: datetime


class BalanceResponse(Model):
    account_id: str
    credit_model: Literal["segment", "legacy"]
    plan: str
    pending_plan: str | None = None
    included: IncludedOut
    purchased: dict[str, int]
    legacy: int | None = None
    held: int
    auto_recharge: dict[str, Any]


class LedgerEntryOut(Model):
    entry_id: str
    kind: str
    pool: str
    amount: int
    balance_after: int
    created_at: datetime
    reference: dict[str, Any]
    description: str


class LedgerPage(Model):
    entries: list[LedgerEntryOut]
    next_cursor: str | None


class CreateAccountRequest(Request):
    account_id: AccountId
    plan: PlanName
    billing_anchor: date
    home_region: Annotated[StrictStr, Field(pattern=rf"^({_REGIONS})$")]
    created_at: datetime | None = None
    smart_encoding: StrictBool = False

    model_config = ConfigDict(extra="forbid", strict=False)  # dates arrive as ISO strings


class PlanChangeRequest(Request):
    plan: PlanName


class PlanChangeResponse(Model):
    account_id: str
    plan: str
    pending_plan: str | None
    granted: int
    effective: Literal["now", "next_refresh", "unchanged"]


class AdjustmentRequest(Request):
    pool: PoolName
    credits: Annotated[StrictInt, Field(ge=-1_000_000, le=1_000_000)]
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)]


class AdjustmentResponse(Model):
    account_id: str
    pool: str
    credits: int
    balance_after: int


class MigrationRequest(Request):
    dry_run: StrictBool


class MigrationBalance(Model):
    credit_model: Literal["segment", "legacy"]
    legacy: int | None
    included: int
    purchased: dict[str, int]
    held: int


class MigrationResponse(Model):
    account_id: str
    dry_run: bool
    outcome: Literal["preview", "migrated", "already_migrated"]
    ratio: str
    converted: int
    before: MigrationBalance
    after: MigrationBalance
    migrated_at: datetime | None
