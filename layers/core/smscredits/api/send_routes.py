"""POST /v1/messages, served by the send function (the only one that loads the Twilio SDK)."""

from __future__ import annotations

from smscredits import runtime
from smscredits.api.http import Auth, Request, Response, Router
from smscredits.domain.idempotency import IdempotencyKey
from smscredits.schemas.messages import MessageRequest, SendResponse
from smscredits.services import sending
from smscredits.settings import get_settings

router = Router()


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
def post_message(request: Request, body: MessageRequest, key: IdempotencyKey) -> Response:
    status, answer = sending.send_message(
        runtime.store(),
        runtime.sender(),
        account_id=request.account_id,
        idempotency_key=key,
        to=body.to,
        body=body.body,
        callback_base_url=get_settings().public_base_url,
        recharge=_auto_recharge,
        after_debit=_threshold_recharge,
    )
    return Response(status, SendResponse.model_validate(answer))


def _auto_recharge(account_id: str, region: str, needed: int) -> bool:
    """Charge the saved card (or wait for the recharge in flight) when a send runs short."""
    from smscredits.services import recharge  # no Stripe import unless a send actually runs short

    store = runtime.store()
    if not recharge.applies(store.get_account(account_id), region):
        return False
    return recharge.recharge_for_send(store, runtime.payments, account_id, region, needed)


def _threshold_recharge(account_id: str, region: str) -> None:
    """Recharge when this send left the region at or below its auto-recharge threshold."""
    store = runtime.store()
    account = store.cached_account(account_id)  # the balance after this send's write
    if account is not None and not account.auto_recharge.get("enabled"):
        return  # most accounts: nothing more to load or read
    from smscredits.services import recharge

    recharge.recharge_at_threshold(store, runtime.payments, account_id, region)
