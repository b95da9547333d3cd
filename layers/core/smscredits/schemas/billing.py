"""Request and response models of the packs, checkout and auto-recharge routes."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictInt, StrictStr

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "currency": "usd",
                    "credits_per_pack": 100,
                    "max_quantity": 100,
                    "packs": [
                        {
                            "region": "AU",
                            "label": "AU",
                            "name": "Australia",
                            "credits": 100,
                            "price_cents": 620,
                        },
                        {"region": "US", "label": "US", "name": "USA", "credits": 100, "price_cents": 100},
                        {
                            "region": "GB",
                            "label": "UK",
                            "name": "United Kingdom",
                            "credits": 100,
                            "price_cents": 630,
                        },
                        {
                            "region": "NZ",
                            "label": "NZ",
                            "name": "New Zealand",
                            "credits": 100,
                            "price_cents": 1260,
                        },
                    ],
                }
            ]
        }
    )

    currency: str
    credits_per_pack: int
    max_quantity: int
    packs: list[PackOut]


class CheckoutRequest(Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"region": "AU", "quantity": 2}]})

    region: RegionCode
    quantity: PackCount


class CheckoutResponse(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
                    "session_id": "cs_test_a1b2c3",
                    "order_id": "chk_0367fffe87d6dae57e65b96ba3",
                }
            ]
        }
    )

    checkout_url: str
    session_id: str
    order_id: str  # GET /v1/packs/orders/{order_id} tells what became of it


class OrderParams(Request):
    order_id: Annotated[StrictStr, Field(min_length=1, max_length=255)]


class OrderResponse(Model):
    """One checkout or recharge and what became of it: creating, open, paid, failed (its payment failed:
    nothing was charged) or unfulfilled (paid, but not the amount ordered: nothing granted, support resolves
    it), with the reason in `failure`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "chk_0367fffe87d6dae57e65b96ba3",
                    "kind": "checkout",
                    "region": "AU",
                    "packs": 2,
                    "credits": 200,
                    "amount_cents": 1240,
                    "currency": "usd",
                    "status": "failed",
                    "failure": "async_payment_failed",
                    "created_at": "2026-11-28T08:00:00Z",
                    "paid_at": None,
                }
            ]
        }
    )

    order_id: str
    kind: Literal["checkout", "recharge"]
    region: str
    packs: int
    credits: int
    amount_cents: int
    currency: str
    status: Literal["creating", "open", "paid", "failed", "unfulfilled"]
    failure: str | None
    created_at: datetime | None
    paid_at: datetime | None


class RechargeRule(Request):
    packs: PackCount
    threshold: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 0


class AutoRechargeRequest(Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"enabled": True, "regions": {"AU": {"packs": 2, "threshold": 20}}, "monthly_cap_cents": 5000}
            ]
        }
    )

    enabled: StrictBool
    regions: dict[RegionCode, RechargeRule] = Field(default_factory=dict)
    monthly_cap_cents: Annotated[StrictInt, Field(ge=1, le=100_000_000)] | None = None


class RechargeRuleOut(Model):
    packs: int
    threshold: int


class AutoRechargeResponse(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "enabled": True,
                    "regions": {"AU": {"packs": 2, "threshold": 20}},
                    "monthly_cap_cents": 5000,
                    "card_on_file": True,
                    "spent_this_period_cents": 1240,
                    "consecutive_failures": 0,
                    "disabled_reason": None,
                    "last_recharge_at": "2026-11-20T09:14:03Z",
                }
            ]
        }
    )

    enabled: bool
    regions: dict[str, RechargeRuleOut]
    monthly_cap_cents: int | None
    card_on_file: bool
    spent_this_period_cents: int
    consecutive_failures: int
    disabled_reason: str | None
    last_recharge_at: str | None
    # Switching auto-recharge on with no card on file: where the owner puts one on file (Checkout, setup mode).
    setup_url: str | None = None


class CardSetupResponse(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "setup_url": "https://checkout.stripe.com/c/pay/cs_test_s1e2t3",
                    "session_id": "cs_test_s1e2t3",
                }
            ]
        }
    )

    setup_url: str
    session_id: str


class WebhookResponse(Model):
    received: bool
    outcome: str
