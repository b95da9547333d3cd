"""The batch routes' models (docs/product.md §8b)."""

from typing import Annotated

from pydantic import ConfigDict, Field, StrictStr

from smscredits.schemas.base import Model, Query, Request
from smscredits.schemas.messages import FundingOut

MAX_MESSAGES = 10_000


class BatchEntry(Request):
    to: Annotated[StrictStr, Field(min_length=1, max_length=32)]
    # body_too_long (1,600 characters) is the domain's per-entry code; this bound keeps absurd payloads out.
    body: Annotated[StrictStr, Field(max_length=10_000)]
    ref: Annotated[StrictStr | None, Field(max_length=200)] = None


class BatchRequest(Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {
                            "to": "+61412345678",
                            "body": "Hi Ana, how was your visit? Reply STOP to opt out.",
                            "ref": "c-1",
                        },
                        {
                            "to": "+14155550123",
                            "body": "Hi Bo, how was your visit? Reply STOP to opt out.",
                            "ref": "c-2",
                        },
                    ]
                }
            ]
        }
    )

    messages: Annotated[list[BatchEntry], Field(min_length=1, max_length=MAX_MESSAGES)]


class IndexCode(Model):
    index: int
    code: str


class Duplicate(Model):
    index: int
    first_index: int


class RegionTotals(Model):
    messages: int
    segments: int
    credits: int


class RechargePreview(Model):
    packs: dict[str, int]
    cost_cents: int
    covers_shortfall: bool


class BatchQuoteResponse(Model):
    count: int
    valid: int
    invalid: list[IndexCode]
    duplicates: list[Duplicate]
    by_region: dict[str, RegionTotals]
    credits: int
    funding: list[FundingOut]
    affordable: bool
    shortfall: dict[str, int]
    recharge: RechargePreview | None


class BatchCreated(Model):
    batch_id: str
    status: str
    accepted: int
    rejected: list[IndexCode]
    credits_held: int
    funding: list[FundingOut]


class BatchCredits(Model):
    held: int
    posted: int
    returned: int


class BatchView(BatchCreated):
    count: int
    counts: dict[str, int]
    credits: BatchCredits
    settlements: int
    created_at: str
    ended_at: str | None


class BatchParams(Request):
    batch_id: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class BatchMessagesQuery(Query):
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    cursor: Annotated[str | None, Field(max_length=16)] = None
    status: Annotated[str | None, Field(max_length=32)] = None


class BatchMessageOut(Model):
    index: int
    message_id: str
    to: str
    status: str
    segments: int
    credits: int
    ref: str | None


class BatchMessagesPage(Model):
    messages: list[BatchMessageOut]
    next_cursor: str | None


class BatchCancelled(Model):
    batch_id: str
    status: str
    cancelled: bool
