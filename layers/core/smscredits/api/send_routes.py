"""POST /v1/messages, served by the send function (the only one that loads the Twilio SDK)."""

from __future__ import annotations

from smscredits import runtime
from smscredits.api.http import Auth, Request, Router
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.schemas.messages import MessageRequest, SendResponse
from smscredits.services import sending

router = Router()
POST_SECONDS = 4.0  # what the post and the answer may take after Twilio's answer


@router.post(
    "/v1/messages",
    auth=Auth.ACCOUNT,
    body=MessageRequest,
    idempotency_key="required",
    response=SendResponse,
    status=202,
    description="Accepted (or a replay of the same Idempotency-Key)",
    summary="Send a message: hold its credits, hand it to Twilio, charge it when Twilio accepts",
)
def post_message(request: Request, body: MessageRequest, key: IdempotencyKey) -> SendResponse:
    ports = runtime.container()
    dispatch_by = None
    if request.deadline is not None:  # Twilio's longest answer and the post must fit in the time left
        dispatch_by = request.deadline - ports.settings.provider_timeout_seconds - POST_SECONDS
    command = sending.SendCommand(
        request.account_id,
        key,
        body.to,
        body.body,
        ports.settings.public_base_url_of(request.api_base_url),
        request.deadline,
        dispatch_by,
    )
    return answer(
        sending.send_message(ports.ledger, ports.sender, ports.recharger, command, ports.status_queue)
    )


def answer(result: sending.SendResult) -> SendResponse:
    """The 202's body: the message as the send left it."""
    hold = result.hold
    return SendResponse(
        message_id=hold.message_id,
        status=result.status,
        region=hold.message["region"],
        encoding=hold.message["encoding"],
        segments=int(hold.message["segments"]),
        credits=hold.credits,
        funding=sending.funding_out(hold.funding),
        detail=result.detail,
    )
