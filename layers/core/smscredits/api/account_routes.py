"""Account owner routes served by the account API function: balance, quote, messages, statements."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from smscredits import runtime
from smscredits.api.app import caller_account
from smscredits.domain.account import Hold
from smscredits.schemas.api import BalanceResponse, LedgerPage, MessageRequest, MessageResponse, QuoteResponse
from smscredits.services import sending, statements
from smscredits.services.accounts import balance_view

router = APIGatewayHttpRouter()


@router.get("/v1/balance", summary="The caller's pools, held credits and auto-recharge state")
def get_balance() -> BalanceResponse:
    account = runtime.store().get_account(caller_account(router))
    return BalanceResponse.model_validate(balance_view(account))


@router.post("/v1/messages/quote", summary="What a message would cost and which pools would pay; no debit")
def post_quote(request: Annotated[MessageRequest, Body()]) -> QuoteResponse:
    store = runtime.store()
    account = store.get_account(caller_account(router))
    return QuoteResponse.model_validate(sending.quote(account, request.to, request.body, store.legacy_rates))


def message_view(hold: Hold) -> dict[str, Any]:
    billing = {"pending": "held", "posted": "charged", "voided": "returned", "refunded": "refunded"}[
        hold.status
    ]
    error = {k: hold.provider[k] for k in ("error_code", "error_message") if hold.provider.get(k)}
    return {
        "message_id": hold.hold_id,
        "status": sending.public_status(hold),
        "billing": billing,
        "to": hold.message.get("to", ""),
        "region": hold.message.get("region", ""),
        "encoding": hold.message.get("encoding", ""),
        "segments": int(hold.message.get("segments", 0)),
        "credits": hold.credits,
        "funding": [{"pool": f.pool, "credits": f.credits} for f in hold.funding],
        "created_at": hold.created_at,
        "ended_at": hold.ended_at,
        "provider_status": hold.provider.get("provider_status") or hold.provider.get("status"),
        "error": error or None,
    }


@router.get("/v1/messages/<message_id>", summary="One message and its billing state")
def get_message(message_id: str) -> MessageResponse:
    hold = runtime.store().get_hold(caller_account(router), message_id)
    return MessageResponse.model_validate(message_view(hold))


@router.get("/v1/ledger", summary="The statement: ledger entries, newest first, paginated")
def get_ledger(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    kind: Annotated[str | None, Query(max_length=200)] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
) -> LedgerPage:
    page = statements.statement_page(
        runtime.reader(), caller_account(router), limit=limit, cursor=cursor, kind=kind, start=from_, end=to
    )
    return LedgerPage.model_validate(page)


@router.get("/v1/ledger.csv", summary="The statement as CSV (same filters as /v1/ledger)")
def get_ledger_csv(
    kind: Annotated[str | None, Query(max_length=200)] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
) -> Response[str]:
    account_id = caller_account(router)
    body = statements.statement_csv(runtime.reader(), account_id, kind=kind, start=from_, end=to)
    return Response(
        status_code=200,
        content_type="text/csv; charset=utf-8",
        body=body,
        headers={"Content-Disposition": f'attachment; filename="ledger-{account_id}.csv"'},
    )
