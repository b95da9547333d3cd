"""POST /webhooks/twilio/status: Twilio's signed status callbacks settle held messages."""

from __future__ import annotations

from smscredits import runtime
from smscredits.adapters import twilio_signature
from smscredits.api.http import Auth, Request, Router
from smscredits.domain.errors import InvalidCallbackSignature, MalformedProviderEvent
from smscredits.observability import count, logger
from smscredits.schemas.callbacks import CallbackResponse, StatusCallbackForm, StatusCallbackQuery
from smscredits.services import settlement
from smscredits.settings import twilio_credentials

router = Router()


def _signed_url(request: Request) -> str:
    """The exact public URL Twilio signed: the API's public base URL (configured, or the name API Gateway
    received the request on, never a header the client sets) + path + query."""
    query = request.event.get("rawQueryString") or ""
    base = runtime.container().settings.public_base_url_of(request.api_base_url)
    return base + request.path + (f"?{query}" if query else "")


def _verified_form(request: Request) -> dict[str, str]:
    """The callback's form fields, once X-Twilio-Signature matches them and the URL (else 403, counted)."""
    params = request.form()
    signature = request.headers.get("x-twilio-signature") or ""
    if not twilio_signature.is_valid(
        twilio_credentials().auth_token, _signed_url(request), params, signature
    ):
        logger.warning("twilio callback rejected: bad signature")
        count("WebhookSignatureRejected")
        count("TwilioSignatureRejected")
        raise InvalidCallbackSignature("The X-Twilio-Signature does not match.")
    return params


@router.post(
    "/webhooks/twilio/status",
    auth=Auth.SIGNED,
    signature_header="X-Twilio-Signature",
    query=StatusCallbackQuery,
    payload=StatusCallbackForm,
    payload_type="application/x-www-form-urlencoded",
    response=CallbackResponse,
    summary="Twilio status callback (X-Twilio-Signature)",
)
def twilio_status(request: Request, query: StatusCallbackQuery) -> CallbackResponse:
    params = _verified_form(request)
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if query.batch_id is not None and query.index is not None and status:
        from smscredits.services import batches  # only a batch message's callback loads it

        outcome = batches.apply_callback(
            runtime.container().ledger,
            runtime.container().batch_messages,
            account_id=query.account_id or "",
            batch_id=query.batch_id,
            index=query.index,
            status=status,
            sid=params.get("MessageSid"),
        )
        logger.info(
            "twilio batch callback",
            extra={"batch_id": query.batch_id, "index": query.index, "outcome": outcome},
        )
        return CallbackResponse(outcome=outcome)
    if not query.account_id or not query.message_id or not status:
        raise MalformedProviderEvent("The callback lacks account_id, message_id or MessageStatus.")
    status_record = {
        "account_id": query.account_id,
        "message_id": query.message_id,
        "status": status,
        "sid": params.get("MessageSid"),
        "error_code": params.get("ErrorCode"),
    }
    queue = runtime.container().status_queue
    if queue is not None:
        # Answered at once; the status worker applies it, retried until it lands (Twilio never retries).
        queue.send(status_record)
        return CallbackResponse(outcome="queued")
    outcome = settlement.settle_status(
        runtime.container().ledger,
        account_id=query.account_id,
        message_id=query.message_id,
        status=status,
        sid=params.get("MessageSid"),
        error_code=params.get("ErrorCode"),
    )
    logger.info(
        "twilio callback settled",
        extra={"message_id": query.message_id, "status": status, "outcome": outcome},
    )
    return CallbackResponse(outcome=outcome)
