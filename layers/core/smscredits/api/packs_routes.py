"""Packs and auto-recharge: the price table and settings (account API) and Checkout (its own function)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from smscredits import runtime
from smscredits.api.app import caller_account, idempotency_key
from smscredits.domain.catalog import normalise_region
from smscredits.schemas.billing import (
    AutoRechargeRequest,
    AutoRechargeResponse,
    CheckoutRequest,
    CheckoutResponse,
    PacksResponse,
)
from smscredits.services import purchases, recharge
from smscredits.settings import get_settings

router = APIGatewayHttpRouter()
checkout_router = APIGatewayHttpRouter()


def _region(code: str) -> str:
    region = normalise_region(code)
    assert region is not None  # the schema admits supported regions only
    return region


@router.get("/v1/packs", summary="The price table: one pack is 100 credits for one region")
def get_packs() -> PacksResponse:
    return PacksResponse.model_validate(purchases.price_table())


@router.get("/v1/auto-recharge", summary="Auto-recharge settings and state")
def get_auto_recharge() -> AutoRechargeResponse:
    account = runtime.store().get_account(caller_account(router))
    return AutoRechargeResponse.model_validate(recharge.settings_view(account))


@router.put(
    "/v1/auto-recharge", summary="Change auto-recharge settings (a monthly cap is required to enable)"
)
def put_auto_recharge(request: Annotated[AutoRechargeRequest, Body()]) -> AutoRechargeResponse:
    view = recharge.put_settings(
        runtime.store(),
        caller_account(router),
        enabled=request.enabled,
        regions={_region(code): rule.model_dump() for code, rule in request.regions.items()},
        monthly_cap_cents=request.monthly_cap_cents,
    )
    return AutoRechargeResponse.model_validate(view)


@checkout_router.post(
    "/v1/packs/checkout",
    summary="Start a Stripe Checkout for 1-100 packs of one region; credits arrive when Stripe confirms payment",
    responses={
        201: {"description": "Checkout Session created (or the same one, for a repeated Idempotency-Key)"}
    },
)
def post_checkout(
    request: Annotated[CheckoutRequest, Body()],
    idempotency_key_header: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response[CheckoutResponse]:
    answer = purchases.create_checkout(
        runtime.store(),
        runtime.payments(),
        account_id=caller_account(checkout_router),
        idempotency_key=idempotency_key(checkout_router),
        region=_region(request.region),
        quantity=request.quantity,
        public_base_url=get_settings().public_base_url,
    )
    return Response(
        status_code=201, content_type="application/json", body=CheckoutResponse.model_validate(answer)
    )
