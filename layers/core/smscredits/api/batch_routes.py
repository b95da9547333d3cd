"""The batch routes (docs/product.md §8b), served by the batch API function."""

from __future__ import annotations

from smscredits import runtime
from smscredits.api.http import Auth, Request, Router
from smscredits.domain import batches as B
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.schemas.batches import (
    BatchCancelled,
    BatchCreated,
    BatchMessagesPage,
    BatchMessagesQuery,
    BatchParams,
    BatchQuoteResponse,
    BatchRequest,
    BatchView,
)
from smscredits.services import batches

router = Router()


def _entries(body: BatchRequest) -> list[B.Entry]:
    return [B.Entry(entry.to, entry.body, entry.ref) for entry in body.messages]


def pacing() -> batches.Pacing:
    settings = runtime.container().settings
    return batches.Pacing(
        settings.batch_rate_per_second, settings.batch_settle_every_seconds, settings.sweep_grace_seconds
    )


@router.post(
    "/v1/batches/quote",
    auth=Auth.ACCOUNT,
    body=BatchRequest,
    response=BatchQuoteResponse,
    summary="What a batch would reserve: each entry checked, duplicates, credits per region; no debit",
)
def post_batch_quote(request: Request, body: BatchRequest) -> BatchQuoteResponse:
    ledger = runtime.container().ledger
    account = ledger.get_account(request.account_id)
    return BatchQuoteResponse.model_validate(batches.quote(account, _entries(body), ledger.legacy_rates))


@router.post(
    "/v1/batches",
    auth=Auth.ACCOUNT,
    body=BatchRequest,
    idempotency_key="required",
    response=BatchCreated,
    status=202,
    description="Reserved and queued (or a replay of the same Idempotency-Key)",
    summary="Send a batch: one reservation for its valid messages, then paced dispatch",
)
def post_batch(request: Request, body: BatchRequest, key: IdempotencyKey) -> BatchCreated:
    ports = runtime.container()
    command = batches.CreateCommand(
        request.account_id,
        key,
        tuple(_entries(body)),
        ports.settings.public_base_url_of(request.api_base_url),
    )
    created = batches.create(
        ports.ledger, ports.batch_messages, ports.batch_queue, ports.recharger, command, pacing()
    )
    return BatchCreated.model_validate(created)


@router.get(
    "/v1/batches/{batch_id}",
    auth=Auth.ACCOUNT,
    params=BatchParams,
    response=BatchView,
    summary="A batch: its status, messages per status, credits held, posted and returned",
)
def get_batch(request: Request, params: BatchParams) -> BatchView:
    ports = runtime.container()
    view = batches.view(ports.ledger, ports.batch_messages, request.account_id, params.batch_id)
    return BatchView.model_validate(view)


@router.get(
    "/v1/batches/{batch_id}/messages",
    auth=Auth.ACCOUNT,
    params=BatchParams,
    query=BatchMessagesQuery,
    response=BatchMessagesPage,
    summary="A batch's messages in index order (masked numbers), by status, one page at a time",
)
def get_batch_messages(request: Request, params: BatchParams, query: BatchMessagesQuery) -> BatchMessagesPage:
    ports = runtime.container()
    page = batches.message_page(
        ports.ledger,
        ports.batch_messages,
        request.account_id,
        params.batch_id,
        cursor=query.cursor,
        status=query.status,
        limit=query.limit,
    )
    return BatchMessagesPage.model_validate(page)


@router.post(
    "/v1/batches/{batch_id}/cancel",
    auth=Auth.ACCOUNT,
    params=BatchParams,
    response=BatchCancelled,
    summary="Cancel a batch: messages not yet handed to Twilio are cancelled and their credits returned",
)
def post_batch_cancel(request: Request, params: BatchParams) -> BatchCancelled:
    ports = runtime.container()
    return BatchCancelled.model_validate(
        batches.cancel(ports.ledger, ports.batch_queue, request.account_id, params.batch_id)
    )
