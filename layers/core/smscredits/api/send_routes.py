"""POST /v1/messages, served by the send function (the only one that loads the Twilio SDK)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from smscredits import runtime
from smscredits.api.app import caller_account, idempotency_key
from smscredits.schemas.api import MessageRequest, SendResponse
from smscredits.services import sending
from smscredits.settings import get_settings

router = APIGatewayHttpRouter()


@router.post(
    "/v1/messages",
    summary="Send a message: hold its credits, hand it to Twilio, charge it when Twilio accepts",
    responses={202: {"description": "Accepted (or a replay of the same Idempotency-Key)"}},
)
def post_message(
    request: Annotated[MessageRequest, Body()],
    idempotency_key_header: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response[SendResponse]:
    status, answer = sending.send_message(
        runtime.store(),
        runtime.sender(),
        account_id=caller_account(router),
        idempotency_key=idempotency_key(router),
        to=request.to,
        body=request.body,
        callback_base_url=get_settings().public_base_url,
    )
    return Response(
        status_code=status, content_type="application/json", body=SendResponse.model_validate(answer)
    )
