"""Request and response models of the HTTP API v1. Requests forbid unknown fields and coercion."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

AccountId = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
PlanName = Literal["starter", "essentials", "growth"]
PoolName = Annotated[StrictStr, Field(pattern=r"^(included|legacy|purchased:(AU|US|GB|UK|NZ))$")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """A query string: every value arrives as text (`limit=50` reads as a number); other names are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


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


class MessageRequest(Request):
    to: Annotated[StrictStr, Field(min_length=1, max_length=32)]
    # The 1600-character limit is a domain rule with its own error code (body_too_long), checked after
    # trimming; this bound only keeps absurd payloads out.
    body: Annotated[StrictStr, Field(max_length=100_000)]


class FundingOut(BaseModel):
    pool: str
    credits: int


class SmartEncodingOut(BaseModel):
    encoding: str
    segments: int


class QuoteResponse(BaseModel):
    region: str
    encoding: str
    segments: int
    credits: int
    characters: int
    non_gsm_characters: list[str]
    smart_encoding: SmartEncodingOut
    funding: list[FundingOut]
    affordable: bool


class SendResponse(BaseModel):
    message_id: str
    status: str
    region: str
    encoding: str
    segments: int
    credits: int
    funding: list[FundingOut]
    detail: str | None = None


class MessageResponse(BaseModel):
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


class IncludedOut(BaseModel):
    available: int
    allowance: int
    period_start: date
    resets_at: datetime


class BalanceResponse(BaseModel):
    account_id: str
    credit_model: Literal["segment", "legacy"]
    plan: str
    pending_plan: str | None = None
    included: IncludedOut
    purchased: dict[str, int]
    legacy: int | None = None
    held: int
    auto_recharge: dict[str, Any]


class LedgerEntryOut(BaseModel):
    entry_id: str
    kind: str
    pool: str
    amount: int
    balance_after: int
    created_at: datetime
    reference: dict[str, Any]
    description: str


class LedgerPage(BaseModel):
    entries: list[LedgerEntryOut]
    next_cursor: str | None


class CreateAccountRequest(Request):
    account_id: AccountId
    plan: PlanName
    billing_anchor: date
    home_region: Annotated[StrictStr, Field(pattern=r"^(AU|US|GB|UK|NZ)$")]
    created_at: datetime | None = None
    smart_encoding: StrictBool = False

    model_config = ConfigDict(extra="forbid", strict=False)  # dates arrive as ISO strings


class PlanChangeRequest(Request):
    plan: PlanName


class PlanChangeResponse(BaseModel):
    account_id: str
    plan: str
    pending_plan: str | None
    granted: int
    effective: Literal["now", "next_refresh", "unchanged"]


class AdjustmentRequest(Request):
    pool: PoolName
    credits: Annotated[StrictInt, Field(ge=-1_000_000, le=1_000_000)]
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)]


class AdjustmentResponse(BaseModel):
    account_id: str
    pool: str
    credits: int
    balance_after: int


class MigrationRequest(Request):
    dry_run: StrictBool


class MigrationBalance(BaseModel):
    credit_model: Literal["segment", "legacy"]
    legacy: int | None
    included: int
    purchased: dict[str, int]
    held: int


class MigrationResponse(BaseModel):
    account_id: str
    dry_run: bool
    outcome: Literal["preview", "migrated", "already_migrated"]
    ratio: str
    converted: int
    before: MigrationBalance
    after: MigrationBalance
    migrated_at: datetime | None


class StatusCallbackQuery(Query):
    """What our send put in the status callback URL."""

    account_id: str | None = None
    message_id: str | None = None


class StatusCallbackForm(BaseModel):
    """The fields of Twilio's status callback we read (it sends more; the signature covers them all)."""

    MessageSid: str | None = None
    MessageStatus: str | None = None
    SmsStatus: str | None = None
    ErrorCode: str | None = None

    model_config = ConfigDict(extra="allow")


class CallbackResponse(BaseModel):
    outcome: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    error: ErrorBody
