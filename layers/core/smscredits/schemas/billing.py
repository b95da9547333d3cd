"""Request and response models of the packs, checkout and auto-recharge routes."""

from typing import Annotated

from pydantic import Field, StrictBool, StrictInt, StrictStr

from smscredits.domain.catalog import MAX_PACKS_PER_PURCHASE, REGION_INPUTS
from smscredits.schemas.base import Model, Request

# From the catalog: adding a region is one row there. Region codes are accepted in either case.
RegionCode = Annotated[
    StrictStr,
    Field(pattern="^(" + "|".join((*REGION_INPUTS, *(name.lower() for name in REGION_INPUTS))) + ")$"),
]
PackCount = Annotated[StrictInt, Field(ge=1, le=MAX_PACKS_PER_PURCHASE)]


class PackOut(Model):
    region: str
    label: str
    name: str
    credits: int
    price_cents: int


class PacksResponse(Model):
    currency: str
    credits_per_pack: int
    max_quantity: int
    packs: list[PackOut]


class CheckoutRequest(Request):
    region: RegionCode
    quantity: PackCount


class CheckoutResponse(Model):
    checkout_url: str
    session_id: str


class RechargeRule(Request):
    packs: PackCount
    threshold: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 0


class AutoRechargeRequest(Request):
    enabled: StrictBool
    regions: dict[RegionCode, RechargeRule] = Field(default_factory=dict)
    monthly_cap_cents: Annotated[StrictInt, Field(ge=1, le=100_000_000)] | None = None


class RechargeRuleOut(Model):
    packs: int
    threshold: int


class AutoRechargeResponse(Model):
    enabled: bool
    regions: dict[str, RechargeRuleOut]
    monthly_cap_cents: int | None
    card_on_file: bool
    spent_this_period_cents: int
    consecutive_failures: int
    disabled_reason: str | None
    last_recharge_at: str | None


class WebhookResponse(Model):
    received: bool
    outcome: str
