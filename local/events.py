"""GET /__local/events: the events published so far, oldest first, each with its `detail-type` and `detail`,
filtered by `detail_type` and `account_id`. Never deployed: template.yaml has no such route.

The route reads a source: any function returning the published events in order. Local mode's source is the
outbox poller (local/outbox.py: `OutboxPoller.events`), which publishes what the functions wrote with their
movements."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request, Response

from local.gateway import error_response

Source = Callable[[], Sequence[Mapping[str, Any]]]


class EventsApp:
    def __init__(self, source: Source) -> None:
        self.source = source

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        if request.method != "GET":
            return error_response(405, "invalid_request", "GET only.", None, {"Allow": "GET"})(
                environ, start_response
            )
        detail_type = request.args.get("detail_type")
        account_id = request.args.get("account_id")
        events = [
            {"detail-type": each["detail-type"], "detail": each["detail"]}
            for each in self.source()
            if (detail_type is None or each["detail-type"] == detail_type)
            and (account_id is None or each["detail"].get("account_id") == account_id)
        ]
        body = json.dumps({"events": events}, default=str)
        return Response(body, 200, content_type="application/json")(environ, start_response)
