"""Account owner routes served by the account API function: balance, quote, messages, statements, and a legacy
account's request for migration."""

from __future__ import annotations

from typing import Any

from smscredits import runtime
from smscredits.api.http import Auth, Request, Response, Router
from smscredits.domain.account import Hold
from smscredits.domain.delivery import public_status
from smscredits.schemas.api import (
    BalanceResponse,
    LedgerCsvQuery,
    LedgerPage,
    LedgerQuery,
    MessageParams,
    MessageResponse,
    MigrationRequestResponse,
    QuoteResponse,
)
from smscredits.schemas.messages import MessageRequest
from smscredits.services import legacy, statements
from smscredits.services.accounts import balance_view

router = Router()


@router.get(
    "/v1/balance",
    auth=Auth.ACCOUNT,
    response=BalanceResponse,
    summary="The caller's pools, held credits and auto-recharge state",
)
def get_balance(request: Request) -> BalanceResponse:
    account = runtime.container().ledger.get_account(request.account_id)
    return BalanceResponse.model_validate(balance_view(account))


@router.post(
    "/v1/migration-request",
    auth=Auth.ACCOUNT,
    response=MigrationRequestResponse,
    description="Recorded once: a repeat answers `already_requested` with the first request's time",
    summary="A legacy account asks support to migrate it to the segment model (support is told; "
    "409 not_legacy for a segment account)",
)
def post_migration_request(request: Request) -> MigrationRequestResponse:
    answer = legacy.request_migration(
        runtime.container().ledger, account_id=request.account_id, requested_by=request.subject
    )
    return MigrationRequestResponse.model_validate(answer)


@router.post(
    "/v1/messages/quote",
    auth=Auth.ACCOUNT,
    body=MessageRequest,
    response=QuoteResponse,
    summary="What a message would cost and which pools would pay; no debit",
)
def post_quote(request: Request, body: MessageRequest) -> QuoteResponse:
    from smscredits.services import sending  # loaded by the routes that need it: ~2% of a cold start

    ledger = runtime.container().ledger
    account = ledger.get_account(request.account_id)
    return QuoteResponse.model_validate(sending.quote(account, body.to, body.body, ledger.legacy_rates))


def message_view(hold: Hold) -> dict[str, Any]:
    billing = {"pending": "held", "posted": "charged", "voided": "returned", "refunded": "refunded"}[
        hold.status
    ]
    error = {k: hold.provider[k] for k in ("error_code", "error_message") if hold.provider.get(k)}
    return {
        "message_id": hold.message_id,
        "status": public_status(hold.status, hold.provider),
        "billing": billing,
        "to": hold.message.get("to", ""),
        "region": hold.message.get("region", ""),
        "encoding": hold.message.get("encoding", ""),
        "segments": int(hold.message.get("segments", 0)),
        "provider_segments": hold.provider.get("num_segments"),
        "credits": hold.credits,
        "funding": [{"pool": f.pool, "credits": f.credits} for f in hold.funding],
        "created_at": hold.created_at,
        "ended_at": hold.ended_at,
        "provider_status": hold.provider.get("provider_status") or hold.provider.get("status"),
        "error": error or None,
    }


@router.get(
    "/v1/messages/{message_id}",
    auth=Auth.ACCOUNT,
    params=MessageParams,
    response=MessageResponse,
    summary="One message and its billing state",
)
def get_message(request: Request, params: MessageParams) -> MessageResponse:
    hold = runtime.container().ledger.get_hold(request.account_id, params.message_id)
    return MessageResponse.model_validate(message_view(hold))


@router.get(
    "/v1/ledger",
    auth=Auth.ACCOUNT,
    query=LedgerQuery,
    response=LedgerPage,
    summary="The statement: ledger entries, newest first, paginated",
)
def get_ledger(request: Request, query: LedgerQuery) -> LedgerPage:
    page = statements.statement_page(
        runtime.container().statements,
        request.account_id,
        limit=query.limit,
        cursor=query.cursor,
        kind=query.kind,
        start=query.from_,
        end=query.to,
    )
    return LedgerPage.model_validate(page)


@router.get(
    "/v1/ledger.csv",
    auth=Auth.ACCOUNT,
    query=LedgerCsvQuery,
    response_type="text/csv",
    summary="The statement as CSV (same filters as /v1/ledger); a large one answers 303 to a download link",
)
def get_ledger_csv(request: Request, query: LedgerCsvQuery) -> Response:
    account_id = request.account_id
    ports = runtime.container()
    body, link = statements.statement_download(
        ports.statements,
        ports.statement_exports,
        account_id,
        kind=query.kind,
        start=query.from_,
        end=query.to,
    )
    if link is not None:
        return Response(303, None, headers={"Location": link})
    return Response(
        200,
        body.decode(),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="ledger-{account_id}.csv"'},
    )
