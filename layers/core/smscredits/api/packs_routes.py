"""Packs and auto-recharge: the price table and settings (account API); Checkout, the settings' changes and card
setup (the checkout function, which alone talks to Stripe)."""

from __future__ import annotations

import uuid

from smscredits import runtime
from smscredits.api.http import Auth, Request, Router
from smscredits.domain.catalog import normalise_region
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.schemas.billing import (
    AutoRechargeRequest,
    AutoRechargeResponse,
    CardSetupResponse,
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


@checkout_router.put(
    "/v1/auto-recharge",
    auth=Auth.ACCOUNT,
    body=AutoRechargeRequest,
    response=AutoRechargeResponse,
    summary="Change auto-recharge settings (a monthly cap is required to enable); with no card on file, a setup_url",
)
def put_auto_recharge(request: Request, body: AutoRechargeRequest) -> AutoRechargeResponse:
    # Served by the checkout function: switching it on with no card on file asks Stripe for a setup session.
    from smscredits.services import card_setup, recharge

    ports = runtime.container()
    view = recharge.put_settings(
        ports.ledger,
        request.account_id,
        enabled=body.enabled,
        regions={_region(code): rule.model_dump() for code, rule in body.regions.items()},
        monthly_cap_cents=body.monthly_cap_cents,
    )
    if view["enabled"] and not view["card_on_file"]:
        # A PUT carries no Idempotency-Key: each one gets a session of its own (unused ones expire at Stripe).
        setup = card_setup.start_setup(
            ports.ledger,
            ports.payments,
            account_id=request.account_id,
            request_key=uuid.uuid4().hex,
            public_base_url=ports.settings.public_base_url_of(request.api_base_url),
        )
        view["setup_url"] = setup["setup_url"]
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
    "/v1/auto-recharge/card",
    auth=Auth.ACCOUNT,
    idempotency_key="required",
    response=CardSetupResponse,
    status=201,
    description="Setup session created (or the same one, for a repeated Idempotency-Key within 24 hours)",
    summary="Put a card on file for auto-recharge, or replace it (after a decline): a Stripe Checkout in setup mode",
)
def post_card(request: Request, key: IdempotencyKey) -> CardSetupResponse:
    from smscredits.services import card_setup

    ports = runtime.container()
    answer = card_setup.start_setup(
        ports.ledger,
        ports.payments,
        account_id=request.account_id,
        request_key=key,
        public_base_url=ports.settings.public_base_url_of(request.api_base_url),
    )
    return CardSetupResponse.model_validate(answer)


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
