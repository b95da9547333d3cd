"""POST /v1/messages (the send function) and the quote's request: the only models the send function loads."""

from typing import Annotated

from pydantic import ConfigDict, Field, StrictStr

from smscredits.schemas.base import Model, Request


class MessageRequest(Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"to": "+61412345678", "body": "Your table is ready. Reply STOP to opt out."}]
        }
    )

    to: Annotated[StrictStr, Field(min_length=1, max_length=32)]
    # The 1600-character limit is a domain rule with its own error code (body_too_long), checked after
    # trimming; this bound only keeps absurd payloads out.
    body: Annotated[StrictStr, Field(max_length=100_000)]


class FundingOut(Model):
    pool: str
    credits: int


class SendResponse(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "message_id": "msg_e938039a1f51504b02f4f18641",
                    "status": "sent",
                    "region": "AU",
                    "encoding": "GSM-7",
                    "segments": 1,
                    "credits": 1,
                    "funding": [{"pool": "included", "credits": 1}],
                    "detail": None,
                }
            ]
        }
    )

    message_id: str
    status: str
    region: str
    encoding: str
    segments: int
    credits: int
    funding: list[FundingOut]
    detail: str | None = None
