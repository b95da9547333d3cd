"""POST /webhooks/twilio/status: Twilio's signed status callbacks, verified and queued for the status worker
(applied at once where no status queue is configured)."""

from __future__ import annotations

from smscredits import runtime
from smscredits.adapters import twilio_signature
from smscredits.api.http import Auth, Request, Router
from smscredits.domain.errors import InvalidCallbackSignature
from smscredits.observability import count, logger
from smscredits.schemas.callbacks import CallbackResponse, StatusCallbackForm, StatusCallbackQuery
from smscredits.services import statuses
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
    record = statuses.status_record(
        account_id=query.account_id,
        message_id=query.message_id,
        batch_id=query.batch_id,
        index=query.index,
        status=params.get("MessageStatus") or params.get("SmsStatus"),
        sid=params.get("MessageSid"),
        error_code=params.get("ErrorCode"),
        try_number=query.try_number,
    )
    ports = runtime.container()
    if ports.status_queue is not None:
        # Answered at once; the status worker applies it, retried until it lands (Twilio never retries).
        ports.status_queue.send(record)
        return CallbackResponse(outcome="queued")
    outcome = statuses.apply_status(ports.ledger, lambda: ports.batch_messages, record)
    logger.info(
        "twilio callback applied",
        extra={"message_id": statuses.describe(record), "status": record["status"], "outcome": outcome},
    )
    return CallbackResponse(outcome=outcome)
