"""Packs and auto-recharge: the price table and settings (account API) and Checkout (its own function)."""

from __future__ import annotations

from smscredits import runtime
from smscredits.api.http import Auth, Request, Router
from smscredits.domain.catalog import normalise_region
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.schemas.billing import (
    AutoRechargeRequest,
    AutoRechargeResponse,
    CheckoutRequest,
    CheckoutResponse,
    OrderParams,
    OrderResponse,
    PacksResponse,
)

router = Router()
checkout_router = Router()


def _region(code: str) -> str:
    region = normalise_region(code)
    assert region is not None  # the schema admits supported regions only
    return region


@router.get(
    "/v1/packs",
    auth=Auth.TOKEN,
    response=PacksResponse,
    summary="The price table: one pack is 100 credits for one region",
)
def get_packs(request: Request) -> PacksResponse:
    from smscredits.services import purchases  # the Stripe-side services load with the routes that use them

    return PacksResponse.model_validate(purchases.price_table())


@router.get(
    "/v1/auto-recharge",
    auth=Auth.ACCOUNT,
    response=AutoRechargeResponse,
    summary="Auto-recharge settings and state",
)
def get_auto_recharge(request: Request) -> AutoRechargeResponse:
    from smscredits.services import recharge

    account = runtime.container().ledger.get_account(request.account_id)
    return AutoRechargeResponse.model_validate(recharge.settings_view(account))


@router.put(
    "/v1/auto-recharge",
    auth=Auth.ACCOUNT,
    body=AutoRechargeRequest,
    response=AutoRechargeResponse,
    summary="Change auto-recharge settings (a monthly cap is required to enable)",
)
def put_auto_recharge(request: Request, body: AutoRechargeRequest) -> AutoRechargeResponse:
    from smscredits.services import recharge

    view = recharge.put_settings(
        runtime.container().ledger,
        request.account_id,
        enabled=body.enabled,
        regions={_region(code): rule.model_dump() for code, rule in body.regions.items()},
        monthly_cap_cents=body.monthly_cap_cents,
    )
    return AutoRechargeResponse.model_validate(view)


@router.get(
    "/v1/packs/orders/{order_id}",
    auth=Auth.ACCOUNT,
    params=OrderParams,
    response=OrderResponse,
    summary="One checkout or recharge of the account and what became of it (failed, unfulfilled: nothing granted)",
)
def get_order(request: Request, params: OrderParams) -> OrderResponse:
    from smscredits.services import purchases

    view = purchases.order_view(runtime.container().ledger, request.account_id, params.order_id)
    return OrderResponse.model_validate(view)


@checkout_router.post(
    "/v1/packs/checkout",
    auth=Auth.ACCOUNT,
    body=CheckoutRequest,
    idempotency_key="required",
    response=CheckoutResponse,
    status=201,
    description="Checkout Session created (or the same one, for a repeated Idempotency-Key)",
    summary="Start a Stripe Checkout for 1-100 packs of one region; credits arrive when Stripe confirms payment",
)
def post_checkout(request: Request, body: CheckoutRequest, key: IdempotencyKey) -> CheckoutResponse:
    from smscredits.services import purchases

    ports = runtime.container()
    answer = purchases.create_checkout(
        ports.ledger,
        ports.payments,
        account_id=request.account_id,
        idempotency_key=key,
        region=_region(body.region),
        quantity=body.quantity,
        public_base_url=ports.settings.public_base_url_of(request.api_base_url),
    )
    return CheckoutResponse.model_validate(answer)
