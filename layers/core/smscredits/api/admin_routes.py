"""Support routes (admin scope): create accounts, change plans, adjust pools, read any balance."""

from __future__ import annotations

import uuid

from smscredits import runtime
from smscredits.api.http import Auth, Request, Router
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.schemas.api import (
    AccountParams,
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

router = Router()


@router.post(
    "/v1/admin/accounts",
    auth=Auth.ADMIN,
    body=CreateAccountRequest,
    response=BalanceResponse,
    status=201,
    summary="Support: create an account (its first allowance is granted)",
)
def create_account(request: Request, body: CreateAccountRequest) -> BalanceResponse:
    actor = request.actor
    account = accounts.create_account(
        runtime.container().ledger,
        account_id=body.account_id,
        plan=body.plan,
        billing_anchor=body.billing_anchor,
        home_region=body.home_region,
        created_at=body.created_at,
        smart_encoding=body.smart_encoding,
        actor=actor,
    )
    return BalanceResponse.model_validate(accounts.balance_view(account))


@router.put(
    "/v1/admin/accounts/{account_id}/plan",
    auth=Auth.ADMIN,
    params=AccountParams,
    body=PlanChangeRequest,
    response=PlanChangeResponse,
    summary="Support: change plan (upgrade now, downgrade at refresh)",
)
def change_plan(request: Request, params: AccountParams, body: PlanChangeRequest) -> PlanChangeResponse:
    actor = request.actor
    answer = accounts.change_plan(
        runtime.container().ledger, account_id=params.account_id, plan=body.plan, actor=actor
    )
    return PlanChangeResponse.model_validate(answer)


@router.post(
    "/v1/admin/accounts/{account_id}/adjustments",
    auth=Auth.ADMIN,
    params=AccountParams,
    body=AdjustmentRequest,
    idempotency_key="optional",
    response=AdjustmentResponse,
    summary="Support: adjust a pool with a reason (never below zero; Idempotency-Key makes it once)",
)
def adjust(
    request: Request, params: AccountParams, body: AdjustmentRequest, key: IdempotencyKey | None
) -> AdjustmentResponse:
    actor = request.actor
    answer = accounts.adjust_pool(
        runtime.container().ledger,
        account_id=params.account_id,
        pool=body.pool,
        credits=body.credits,
        reason=body.reason,
        actor=actor,
        key=key or uuid.uuid4().hex,
    )
    return AdjustmentResponse.model_validate(answer)


@router.post(
    "/v1/admin/accounts/{account_id}/migration",
    auth=Auth.ADMIN,
    params=AccountParams,
    body=MigrationRequest,
    response=MigrationResponse,
    summary="Support: migrate a legacy account (dry_run shows before and after; the real run is idempotent)",
)
def migrate(request: Request, params: AccountParams, body: MigrationRequest) -> MigrationResponse:
    actor = request.actor
    answer = legacy.migrate_account(
        runtime.container().ledger,
        account_id=params.account_id,
        dry_run=body.dry_run,
        ratio=runtime.container().settings.migration_ratio,
        actor=actor,
    )
    return MigrationResponse.model_validate(answer)


@router.get(
    "/v1/admin/accounts/{account_id}/balance",
    auth=Auth.ADMIN,
    params=AccountParams,
    response=BalanceResponse,
    summary="Support: any account's balance",
)
def admin_balance(request: Request, params: AccountParams) -> BalanceResponse:
    return BalanceResponse.model_validate(
        accounts.balance_view(runtime.container().ledger.get_account(params.account_id))
    )
