"""The Stripe stand-in's Billing side, driven by a local-only route (Stripe's own dashboard plays this part):
create, change and cancel a subscription and pay its invoices, each change sent as Stripe's signed events.

    POST /__local/stripe/subscriptions               {"account_id", "price", "customer"?, "home_region"?}
        a subscription billed from now (the local clock); sends customer.subscription.created, then invoice.paid
        (billing_reason subscription_create)
    POST /__local/stripe/subscriptions/{id}          {"price"?, "cancel_at_period_end"?}: customer.subscription.updated
    POST /__local/stripe/subscriptions/{id}/cancel   ends it now: customer.subscription.deleted
    POST /__local/stripe/subscriptions/{id}/cycle    the period is over (move the local clock first): pays the next
        invoice (customer.subscription.updated, invoice.paid with billing_reason subscription_cycle), or, when it
        is set to cancel at period end, ends it (customer.subscription.deleted)
    GET  /__local/stripe/subscriptions/{id}          the subscription as the stand-in holds it

Every event's `created` comes from the local clock and is later than the one before (Stripe's has a second's
resolution; the service orders a subscription's states by it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from local.stripe_standin import StripeStandIn
from local.stripe_webhooks import event
from local.stripe_wire import new_id
from smscredits.domain.periods import anniversary

Now = Callable[[], datetime]


def _next_anniversary(anchor: datetime, after: datetime) -> datetime:
    """The anchor's day and time in the month after `after`'s (the 29th-31st clamp as Stripe's do)."""
    year, month = (after.year + 1, 1) if after.month == 12 else (after.year, after.month + 1)
    day = anniversary(anchor.day, year, month)
    return datetime(day.year, day.month, day.day, anchor.hour, anchor.minute, anchor.second, tzinfo=UTC)


class StripeBilling:
    """Subscriptions held in memory beside the stand-in's customers; events through its webhooks."""

    def __init__(self, stand_in: StripeStandIn, now: Now) -> None:
        self.stand_in = stand_in
        self.now = now
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self._last_event = 0
        self._lock = threading.Lock()
        self._urls = Map(
            [
                Rule("/", endpoint="create", methods=["POST"]),
                Rule("/<id>", endpoint="show", methods=["GET"]),
                Rule("/<id>", endpoint="update", methods=["POST"]),
                Rule("/<id>/cancel", endpoint="cancel", methods=["POST"]),
                Rule("/<id>/cycle", endpoint="cycle", methods=["POST"]),
            ],
            strict_slashes=False,
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            # Mounted at /__local/stripe/subscriptions: the collection itself arrives with an empty path.
            endpoint, arguments = self._urls.bind_to_environ(environ).match(request.path or "/")
            body = json.loads(request.get_data(as_text=True) or "{}") if request.method == "POST" else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            with self._lock:
                answer = getattr(self, endpoint)(body, *arguments.values())
        except HTTPException as refused:
            answer = _error(refused.code or 404, "no such route")
        except (ValueError, KeyError) as refused:
            answer = _error(400, str(refused))
        return answer(environ, start_response)

    def _send(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        sent = event(kind, obj)
        self._last_event = max(int(self.now().timestamp()), self._last_event + 1)
        sent["created"] = self._last_event
        return sent

    def _find(self, identifier: str) -> dict[str, Any]:
        found = self.subscriptions.get(identifier)
        if found is None:
            raise KeyError(f"no subscription {identifier}")
        return found

    def create(self, body: dict[str, Any]) -> Response:
        account_id, price = str(body["account_id"]), str(body["price"])
        customer = body.get("customer")
        if customer is None:
            customer = self.stand_in.create_customer({"metadata": {"account_id": account_id}}, None)["id"]
        elif customer not in self.stand_in.customers:
            raise ValueError(f"no customer {customer}")
        now = self.now().replace(microsecond=0)
        start, end = int(now.timestamp()), int(_next_anniversary(now, now).timestamp())
        metadata = {"account_id": account_id, "home_region": str(body.get("home_region") or "US")}
        subscription = {
            "id": new_id("sub_"),
            "object": "subscription",
            "billing_cycle_anchor": start,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "created": start,
            "customer": customer,
            "ended_at": None,
            "items": {"object": "list", "data": [self._item(price, start, end)]},
            "livemode": False,
            "metadata": metadata,
            "status": "active",
        }
        self.subscriptions[subscription["id"]] = subscription
        created = self._send("customer.subscription.created", subscription)
        paid = self._send("invoice.paid", self._invoice(subscription, "subscription_create"))
        self.stand_in.webhooks.send([created, paid])
        return _json(subscription, 201)

    @staticmethod
    def _item(price: str, start: int, end: int) -> dict[str, Any]:
        return {
            "id": new_id("si_"),
            "object": "subscription_item",
            "current_period_start": start,
            "current_period_end": end,
            "price": {"id": price, "object": "price"},
            "quantity": 1,
        }

    def _invoice(self, subscription: dict[str, Any], reason: str) -> dict[str, Any]:
        item = subscription["items"]["data"][0]
        return {
            "id": new_id("in_"),
            "object": "invoice",
            "billing_reason": reason,
            "customer": subscription["customer"],
            "metadata": {},
            "status": "paid",
            "parent": {"subscription_details": {"subscription": subscription["id"]}},
            "lines": {
                "object": "list",
                "data": [
                    {
                        "id": new_id("il_"),
                        "object": "line_item",
                        "period": {"start": item["current_period_start"], "end": item["current_period_end"]},
                        "pricing": {"price_details": {"price": item["price"]["id"]}},
                    }
                ],
            },
        }

    def show(self, _: dict[str, Any], identifier: str) -> Response:
        return _json(self._find(identifier))

    def update(self, body: dict[str, Any], identifier: str) -> Response:
        subscription = self._find(identifier)
        if subscription["status"] == "canceled":
            raise ValueError("a canceled subscription cannot be changed; create a new one")
        if "price" in body:
            subscription["items"]["data"][0]["price"] = {"id": str(body["price"]), "object": "price"}
        if "cancel_at_period_end" in body:
            subscription["cancel_at_period_end"] = bool(body["cancel_at_period_end"])
        self.stand_in.webhooks.send([self._send("customer.subscription.updated", subscription)])
        return _json(subscription)

    def cancel(self, _: dict[str, Any], identifier: str) -> Response:
        subscription = self._find(identifier)
        self._end(subscription)
        return _json(subscription)

    def _end(self, subscription: dict[str, Any]) -> None:
        now = int(self.now().timestamp())
        subscription.update(status="canceled", canceled_at=now, ended_at=now)
        self.stand_in.webhooks.send([self._send("customer.subscription.deleted", subscription)])

    def cycle(self, _: dict[str, Any], identifier: str) -> Response:
        subscription = self._find(identifier)
        if subscription["status"] == "canceled":
            raise ValueError("the subscription is canceled")
        item = subscription["items"]["data"][0]
        period_end = datetime.fromtimestamp(item["current_period_end"], UTC)
        if self.now() < period_end:
            return _error(
                409, f"the period ends at {period_end.isoformat()}: move the local clock past it first"
            )
        if subscription["cancel_at_period_end"]:
            self._end(subscription)
            return _json(subscription)
        anchor = datetime.fromtimestamp(subscription["billing_cycle_anchor"], UTC)
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] = int(_next_anniversary(anchor, period_end).timestamp())
        updated = self._send("customer.subscription.updated", subscription)
        paid = self._send("invoice.paid", self._invoice(subscription, "subscription_cycle"))
        self.stand_in.webhooks.send([updated, paid])
        return _json(subscription)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": {"type": "invalid_request_error", "message": message}}, status)
