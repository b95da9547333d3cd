"""Support routes (admin scope): create accounts, change plans, adjust pools, read any balance."""

from __future__ import annotations

import uuid
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from smscredits import runtime
from smscredits.api.app import idempotency_key, require_admin
from smscredits.schemas.api import (
    AccountId,
    AdjustmentRequest,
    AdjustmentResponse,
    BalanceResponse,
    CreateAccountRequest,
    MigrationRequest,
    MigrationResponse,
    PlanChangeRequest,
    PlanChangeResponse,
)
from smscredits.services import accounts, legacy
from smscredits.settings import get_settings

router = APIGatewayHttpRouter()
AccountPath = Annotated[AccountId, Path()]


@router.post("/v1/admin/accounts", summary="Support: create an account (its first allowance is granted)")
def create_account(request: Annotated[CreateAccountRequest, Body()]) -> Response[BalanceResponse]:
    actor = require_admin(router)
    account = accounts.create_account(
        runtime.store(),
        account_id=request.account_id,
        plan=request.plan,
        billing_anchor=request.billing_anchor,
        home_region=request.home_region,
        created_at=request.created_at,
        smart_encoding=request.smart_encoding,
        actor=actor,
    )
    return Response(
        status_code=201,
        content_type="application/json",
        body=BalanceResponse.model_validate(accounts.balance_view(account)),
    )


@router.put(
    "/v1/admin/accounts/<account_id>/plan", summary="Support: change plan (upgrade now, downgrade at refresh)"
)
def change_plan(account_id: AccountPath, request: Annotated[PlanChangeRequest, Body()]) -> PlanChangeResponse:
    actor = require_admin(router)
    answer = accounts.change_plan(runtime.store(), account_id=account_id, plan=request.plan, actor=actor)
    return PlanChangeResponse.model_validate(answer)


@router.post(
    "/v1/admin/accounts/<account_id>/adjustments",
    summary="Support: adjust a pool with a reason (never below zero; Idempotency-Key makes it once)",
)
def adjust(account_id: AccountPath, request: Annotated[AdjustmentRequest, Body()]) -> AdjustmentResponse:
    actor = require_admin(router)
    answer = accounts.adjust_pool(
        runtime.store(),
        account_id=account_id,
        pool=request.pool,
        credits=request.credits,
        reason=request.reason,
        actor=actor,
        key=idempotency_key(router) or uuid.uuid4().hex,
    )
    return AdjustmentResponse.model_validate(answer)


@router.post(
    "/v1/admin/accounts/<account_id>/migration",
    summary="Support: migrate a legacy account (dry_run shows before and after; the real run is idempotent)",
)
def migrate(account_id: AccountPath, request: Annotated[MigrationRequest, Body()]) -> MigrationResponse:
    actor = require_admin(router)
    answer = legacy.migrate_account(
        runtime.store(),
        account_id=account_id,
        dry_run=request.dry_run,
        ratio=get_settings().migration_ratio,
        actor=actor,
    )
    return MigrationResponse.model_validate(answer)


@router.get("/v1/admin/accounts/<account_id>/balance", summary="Support: any account's balance")
def admin_balance(account_id: AccountPath) -> BalanceResponse:
    require_admin(router)
    return BalanceResponse.model_validate(accounts.balance_view(runtime.store().get_account(account_id)))
