"""Support routes (admin scope): create, list, read and change accounts, change plans, adjust pools, read any
balance. Every write but creation (idempotent by the account id) takes an Idempotency-Key."""

from __future__ import annotations

from smscredits import runtime
from smscredits.api.http import Auth, Request, Router
from smscredits.domain.account_settings import AccountPatch, account_view
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.schemas.api import (
    AccountListQuery,
    AccountPage,
    AccountParams,
    AccountPatchRequest,
    AccountResponse,
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
        stripe_customer_id=body.stripe_customer_id,
        low_balance_threshold=body.low_balance_threshold,
    )
    return BalanceResponse.model_validate(accounts.balance_view(account))


@router.get(
    "/v1/admin/accounts",
    auth=Auth.ADMIN,
    query=AccountListQuery,
    response=AccountPage,
    summary="Support: list accounts by id, a page at a time (`next_cursor` continues)",
)
def list_accounts(request: Request, query: AccountListQuery) -> AccountPage:
    page = accounts.list_accounts(runtime.container().statements, limit=query.limit, cursor=query.cursor)
    return AccountPage.model_validate(page)


@router.get(
    "/v1/admin/accounts/{account_id}",
    auth=Auth.ADMIN,
    params=AccountParams,
    response=AccountResponse,
    summary="Support: an account's settings and billing period",
)
def read_account(request: Request, params: AccountParams) -> AccountResponse:
    account = runtime.container().ledger.get_account(params.account_id)
    return AccountResponse.model_validate(account_view(account))


@router.patch(
    "/v1/admin/accounts/{account_id}",
    auth=Auth.ADMIN,
    params=AccountParams,
    body=AccountPatchRequest,
    idempotency_key="required",
    response=AccountResponse,
    summary="Support: change an account's billing anchor, home region, Stripe customer, low-balance threshold, "
    "smart encoding or batch rate (one write; a future anchor is refused)",
)
def update_account(
    request: Request, params: AccountParams, body: AccountPatchRequest, key: IdempotencyKey
) -> AccountResponse:
    actor = request.actor
    patch = AccountPatch(**body.model_dump(exclude_none=True))
    answer = accounts.update_account(
        runtime.container().ledger, account_id=params.account_id, patch=patch, actor=actor, key=key
    )
    return AccountResponse.model_validate(answer)


@router.put(
    "/v1/admin/accounts/{account_id}/plan",
    auth=Auth.ADMIN,
    params=AccountParams,
    body=PlanChangeRequest,
    idempotency_key="required",
    response=PlanChangeResponse,
    summary="Support: change plan (upgrade now, downgrade at refresh; Idempotency-Key makes it once)",
)
def change_plan(
    request: Request, params: AccountParams, body: PlanChangeRequest, key: IdempotencyKey
) -> PlanChangeResponse:
    actor = request.actor
    answer = accounts.change_plan(
        runtime.container().ledger, account_id=params.account_id, plan=body.plan, actor=actor, key=key
    )
    return PlanChangeResponse.model_validate(answer)


@router.post(
    "/v1/admin/accounts/{account_id}/adjustments",
    auth=Auth.ADMIN,
    params=AccountParams,
    body=AdjustmentRequest,
    idempotency_key="required",
    response=AdjustmentResponse,
    summary="Support: adjust a pool with a reason (never below zero; Idempotency-Key makes it once)",
)
def adjust(
    request: Request, params: AccountParams, body: AdjustmentRequest, key: IdempotencyKey
) -> AdjustmentResponse:
    actor = request.actor
    answer = accounts.adjust_pool(
        runtime.container().ledger,
        account_id=params.account_id,
        pool=body.pool,
        credits=body.credits,
        reason=body.reason,
        actor=actor,
        key=key,
    )
    return AdjustmentResponse.model_validate(answer)


@router.post(
    "/v1/admin/accounts/{account_id}/migration",
    auth=Auth.ADMIN,
    params=AccountParams,
    body=MigrationRequest,
    idempotency_key="required",
    response=MigrationResponse,
    summary="Support: migrate a legacy account (dry_run shows before and after; the real run is idempotent)",
)
def migrate(
    request: Request, params: AccountParams, body: MigrationRequest, key: IdempotencyKey
) -> MigrationResponse:
    actor = request.actor
    answer = legacy.migrate_account(
        runtime.container().ledger,
        account_id=params.account_id,
        dry_run=body.dry_run,
        ratio=runtime.container().settings.migration_ratio,
        actor=actor,
        key=key,
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
