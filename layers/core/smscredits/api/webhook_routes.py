"""POST /webhooks/twilio/status: Twilio's signed status callbacks settle held messages."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from smscredits import runtime
from smscredits.adapters import twilio_signature
from smscredits.api.app import error_response
from smscredits.domain.errors import NotFound
from smscredits.observability import count, logger
from smscredits.services import sending
from smscredits.settings import get_settings, twilio_credentials

router = APIGatewayHttpRouter()


def _signed_url() -> str:
    """The exact public URL Twilio signed: configuration + path + query, never the Host header."""
    event = router.current_event
    query = event.raw_event.get("rawQueryString") or ""
    path = event.raw_event.get("rawPath") or event.path
    return get_settings().public_base_url + path + (f"?{query}" if query else "")


@router.post(
    "/webhooks/twilio/status", summary="Twilio status callback (X-Twilio-Signature)", include_in_schema=True
)
def twilio_status() -> Response[Any]:
    event = router.current_event
    body = event.decoded_body or ""
    params = dict(parse_qsl(body, keep_blank_values=True))
    signature = event.headers.get("x-twilio-signature") or ""
    if not twilio_signature.is_valid(twilio_credentials().auth_token, _signed_url(), params, signature):
        logger.warning("twilio callback rejected: bad signature")
        count("WebhookSignatureRejected")
        count("TwilioSignatureRejected")
        return error_response(403, "forbidden", "The X-Twilio-Signature does not match.")
    query = event.query_string_parameters or {}
    account_id, message_id = query.get("account_id"), query.get("message_id")
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if not account_id or not message_id or not status:
        return error_response(
            400, "invalid_request", "The callback lacks account_id, message_id or MessageStatus."
        )
    try:
        outcome = sending.settle_status(
            runtime.store(),
            account_id=account_id,
            message_id=message_id,
            status=status,
            sid=params.get("MessageSid"),
            error_code=params.get("ErrorCode"),
        )
    except NotFound:
        return error_response(404, "not_found", "No such message.")
    logger.info(
        "twilio callback settled", extra={"message_id": message_id, "status": status, "outcome": outcome}
    )
    return Response(status_code=200, content_type="application/json", body={"outcome": outcome})
