"""Twilio's status callback: what our send put in its URL, the form fields we read, our answer."""

from typing import Annotated

from pydantic import ConfigDict, Field

from smscredits.schemas.base import Model, Query


class StatusCallbackQuery(Query):
    """What our send put in the status callback URL."""

    account_id: str | None = None
    message_id: str | None = None
    # Which try of the message (a try Twilio answered as busy is held again as the next); absent in URLs older
    # than tries.
    try_number: Annotated[int | None, Field(alias="try", ge=1)] = None
    # A batch message's callback names its batch and its index instead of a message id.
    batch_id: str | None = None
    index: int | None = None


class StatusCallbackForm(Model):
    """The fields of Twilio's status callback we read (it sends more; the signature covers them all)."""

    MessageSid: str | None = None
    MessageStatus: str | None = None
    SmsStatus: str | None = None
    ErrorCode: str | None = None

    model_config = ConfigDict(extra="allow")


class CallbackResponse(Model):
    outcome: str
