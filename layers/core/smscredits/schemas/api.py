"""Request and response models of the account API (v1). Requests forbid unknown fields and coercion."""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic.config import JsonDict

from smscredits.domain.account import ACCOUNT_ID_PATTERN, DEFAULT_LOW_BALANCE_THRESHOLD
from smscredits.domain.account_settings import (
    MAX_BATCH_RATE,
    MAX_LOW_BALANCE_THRESHOLD,
    STRIPE_CUSTOMER_PATTERN,
)
from smscredits.domain.catalog import PLANS, REGION_INPUTS
from smscredits.schemas.base import Model, Query, Request
from smscredits.schemas.messages import FundingOut

# Plans and regions come from the catalog: adding one is one row there.
_REGIONS = "|".join(REGION_INPUTS)
AccountId = Annotated[StrictStr, Field(pattern=ACCOUNT_ID_PATTERN)]
PlanName = Literal[*PLANS]  # type: ignore[valid-type]
StripeCustomerId = Annotated[StrictStr, Field(pattern=STRIPE_CUSTOMER_PATTERN)]
LowBalanceThreshold = Annotated[StrictInt, Field(ge=0, le=MAX_LOW_BALANCE_THRESHOLD)]
BatchRate = Annotated[StrictInt, Field(ge=1, le=MAX_BATCH_RATE)]
# One page of the account list is one BatchGetItem of the balance items (100 keys at most).
MAX_ACCOUNTS_PAGE = 100
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
    applied: bool = Field(
        description="Whether this account has smart encoding on (a support setting): when it is, the quote's "
        "own encoding and segments already count the replaced text."
    )


class ReplacementOut(Model):
    character: str
    code_point: str = Field(description='"U+2019"')
    name: str = Field(description="The Unicode name; empty for a code point that has none.")
    replacement: str = Field(
        description="GSM-7 text to write instead (Smart Encoding's look-alike); empty: remove the character."
    )


class IfReplacedOut(Model):
    encoding: str
    segments: int
    credits: int


QUOTE_EXAMPLE: JsonDict = {
    "region": "AU",
    "encoding": "UCS-2",
    "segments": 1,
    "credits": 1,
    "characters": 24,
    "non_gsm_characters": ["’"],
    "smart_encoding": {"encoding": "GSM-7", "segments": 1, "applied": False},
    "funding": [{"pool": "included", "credits": 1}],
    "affordable": True,
    "units": 24,
    "segment_capacity": 70,
    "last_segment_units": 24,
    "last_segment_units_left": 46,
    "replacements": [
        {"character": "’", "code_point": "U+2019", "name": "RIGHT SINGLE QUOTATION MARK", "replacement": "'"}
    ],
    "if_replaced": {"encoding": "GSM-7", "segments": 1, "credits": 1},
}


class QuoteResponse(Model):
    """What a send would cost now; nothing is held. The segment fields come from the same count that bills."""

    model_config = ConfigDict(json_schema_extra={"examples": [QUOTE_EXAMPLE]})

    region: str
    encoding: str
    segments: int
    credits: int
    characters: int = Field(description="Code points of the trimmed body.")
    non_gsm_characters: list[str] = Field(description="Distinct characters that force UCS-2, in order.")
    smart_encoding: SmartEncodingOut = Field(description="What Twilio's smart encoding would give.")
    funding: list[FundingOut] = Field(description="Which pools would pay; empty when not affordable.")
    affordable: bool
    units: int = Field(
        description="Septets (GSM-7: ^ { } \\ [ ~ ] | € count 2) or UTF-16 units (UCS-2: an emoji counts 2)."
    )
    segment_capacity: int = Field(
        description="Units one segment holds: 160 (GSM-7) or 70 (UCS-2) for a single segment, 153 or 67 per "
        "part of a longer message."
    )
    last_segment_units: int = Field(description="Units used in the last segment.")
    last_segment_units_left: int = Field(description="Units the last segment still holds before one more.")
    replacements: list[ReplacementOut] = Field(
        description="For each of non_gsm_characters, in the same order: what to write instead."
    )
    if_replaced: IfReplacedOut | None = Field(
        description="The cost with every replacement applied (always GSM-7); null when the body is GSM-7 "
        "already or nothing visible would be left."
    )


class MessageResponse(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "message_id": "msg_e938039a1f51504b02f4f18641",
                    "status": "sent",
                    "billing": "charged",
                    "to": "+61412345678",
                    "region": "AU",
                    "encoding": "GSM-7",
                    "segments": 1,
                    "provider_segments": 1,
                    "credits": 1,
                    "funding": [{"pool": "included", "credits": 1}],
                    "created_at": "2026-11-28T06:15:16.700000Z",
                    "ended_at": "2026-11-28T06:15:17.200000Z",
                    "provider_status": "delivered",
                    "error": None,
                }
            ]
        }
    )

    message_id: str
    status: str  # pending | sent | failed | refunded
    billing: str  # held | charged | returned | refunded
    to: str
    region: str
    encoding: str
    segments: int  # ours: what was quoted and billed
    provider_segments: int | None = None  # Twilio's count (its answer to the create); null until it answered
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
    """Included credits pay for any region and lapse at the reset; a region's purchased credits pay only for
    that region and never expire."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account_id": "acme-dental",
                    "credit_model": "segment",
                    "plan": "essentials",
                    "pending_plan": None,
                    "included": {
                        "available": 74,
                        "allowance": 75,
                        "period_start": "2026-11-28",
                        "resets_at": "2026-12-28T00:00:00Z",
                    },
                    "purchased": {"AU": 100, "US": 0, "GB": 0, "NZ": 0},
                    "legacy": None,
                    "held": 0,
                    "auto_recharge": {"enabled": False, "disabled_reason": None},
                    "migration_requested_at": None,
                }
            ]
        }
    )

    account_id: str
    credit_model: Literal["segment", "legacy"]
    plan: str
    pending_plan: str | None = None
    included: IncludedOut
    purchased: dict[str, int]
    legacy: int | None = None
    held: int
    auto_recharge: dict[str, Any]
    migration_requested_at: datetime | None = Field(
        default=None,
        description="A legacy account: when its owner asked support to migrate it (POST /v1/migration-request); "
        "null when never asked",
    )


class MigrationRequestResponse(Model):
    """The owner's request that support migrate a legacy account: `requested` by this call, or
    `already_requested` (the first request's time; nothing written again)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account_id": "acme-dental",
                    "outcome": "requested",
                    "migration_requested_at": "2026-11-28T06:15:16.700000Z",
                }
            ]
        }
    )

    account_id: str
    outcome: Literal["requested", "already_requested"]
    migration_requested_at: datetime


class LedgerEntryOut(Model):
    entry_id: str
    kind: str
    pool: str
    amount: int
    balance_after: int
    created_at: datetime
    reference: dict[str, Any]
    description: str
    receipt_url: str | None = Field(
        default=None,
        description="A purchase's Stripe receipt (the paying charge's receipt_url); null for any other entry "
        "and for purchases granted before receipts were kept",
    )


class LedgerPage(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "entries": [
                        {
                            "entry_id": "acme-dental:3:0",
                            "kind": "hold",
                            "pool": "included",
                            "amount": -1,
                            "balance_after": 74,
                            "created_at": "2026-11-28T06:15:16.700000Z",
                            "reference": {
                                "message_id": "msg_e938039a1f51504b02f4f18641",
                                "to": "+61******678",
                            },
                            "description": "Message to +61******678 — 1 credit held from included",
                            "receipt_url": None,
                        },
                        {
                            "entry_id": "acme-dental:2:0",
                            "kind": "purchase",
                            "pool": "purchased:AU",
                            "amount": 100,
                            "balance_after": 100,
                            "created_at": "2026-11-28T06:10:02.115000Z",
                            "reference": {
                                "source": "checkout",
                                "region": "AU",
                                "packs": 1,
                                "amount_cents": 620,
                                "order_id": "ord_5f0c2a",
                                "payment_intent": "pi_3Q9x",
                                "session_id": "cs_test_a1b2c3",
                                "receipt_url": "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8x",
                            },
                            "description": "Pack purchased — 100 AU credits, $6.20",
                            "receipt_url": "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8x",
                        },
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )

    entries: list[LedgerEntryOut]
    next_cursor: str | None


class CreateAccountRequest(Request):
    account_id: AccountId
    plan: PlanName
    billing_anchor: date
    home_region: Annotated[StrictStr, Field(pattern=rf"^({_REGIONS})$")]
    created_at: datetime | None = None
    smart_encoding: StrictBool = False
    stripe_customer_id: StripeCustomerId | None = None
    low_balance_threshold: LowBalanceThreshold = DEFAULT_LOW_BALANCE_THRESHOLD

    model_config = ConfigDict(extra="forbid", strict=False)  # dates arrive as ISO strings


class AccountPatchRequest(Request):
    """The settings to change; a field left out stays as it is."""

    billing_anchor: date | None = None
    home_region: Annotated[StrictStr | None, Field(pattern=rf"^({_REGIONS})$")] = None
    stripe_customer_id: StripeCustomerId | None = None
    low_balance_threshold: LowBalanceThreshold | None = None
    smart_encoding: StrictBool | None = None
    batch_rate_per_second: BatchRate | None = None

    model_config = ConfigDict(extra="forbid", strict=False)  # dates arrive as ISO strings


class AccountResponse(Model):
    """An account's settings and billing period, as support reads and changes them."""

    account_id: str
    plan: str
    pending_plan: str | None
    credit_model: Literal["segment", "legacy"]
    home_region: str
    billing_anchor: date
    period_start: date
    next_refresh_at: datetime
    stripe_customer_id: str | None
    card_on_file: bool
    low_balance_threshold: int
    smart_encoding: bool
    batch_rate_per_second: int | None = Field(
        description="Messages per second its batches are sent at; null: the service's BATCH_RATE_PER_SECOND "
        "(20 unless configured)."
    )
    created_at: datetime
    migrated_at: datetime | None
    migration_requested_at: datetime | None = Field(
        description="When the owner asked for a migration (POST /v1/migration-request); it stays after the "
        "migration, which sets migrated_at"
    )
    migration_requested_by: str | None = Field(description="The requesting token's subject (`sub`)")


class AccountListQuery(Query):
    limit: Annotated[int, Field(ge=1, le=MAX_ACCOUNTS_PAGE)] = 50
    cursor: Annotated[str | None, Field(max_length=200)] = None


class AccountPage(Model):
    accounts: list[AccountResponse]
    next_cursor: str | None


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
