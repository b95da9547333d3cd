"""Stripe stand-in: customers, Checkout with a local pay page, off-session PaymentIntents, signed webhooks.

Served under /__local/stripe when STRIPE_SECRET_KEY is unset (local.run then points the SDK here through
STRIPE_API_BASE). State lives in memory; an Idempotency-Key replays the first answer, and the same key with
other parameters is refused as Stripe refuses it.

    POST /v1/customers                  GET /v1/customers/{id}
    POST /v1/checkout/sessions          GET /v1/checkout/sessions/{id}
    POST /v1/payment_intents            GET /v1/payment_intents/{id}     (off_session + confirm charges)
    GET  /checkout/{session id}         the pay page: one form, a test card, a Pay button
    POST /checkout/{session id}         pays, answers 303 to success_url, then sends the signed
                                        checkout.session.completed and payment_intent.succeeded
    GET  /events                        every event sent, newest first, each with its `delivery` (for tests)

Test cards (the pay page always pays, as after a passed 3-D Secure check; the card chosen there is the one
saved for off-session charges when the session sets setup_future_usage=off_session):

    4242 4242 4242 4242   off-session charges succeed (payment_intent.succeeded)
    4000 0000 0000 0341   off-session charges decline: card_declined (payment_intent.payment_failed)
    4000 0027 6000 3184   off-session charges need the owner: authentication_required

The pay page preselects each account's card: demo-essentials 4000 0000 0000 0341, every other account
(demo-starter, demo-growth, ...) 4242 4242 4242 4242; demo-legacy cannot buy packs (legacy credit model).
LOCAL_STRIPE_CARDS='{"<account id>": "4000 0027 6000 3184"}' overrides it per account.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import stripe
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

log = logging.getLogger("local.stripe")

SUCCEEDS = "4242424242424242"
DECLINES = "4000000000000341"
AUTHENTICATES = "4000002760003184"


@dataclass(frozen=True)
class Card:
    number: str
    last4: str
    behaviour: str
    code: str | None = None  # the card_error code of an off-session charge
    decline_code: str | None = None
    message: str | None = None


CARDS = {
    SUCCEEDS: Card(SUCCEEDS, "4242", "off-session charges succeed"),
    DECLINES: Card(
        DECLINES,
        "0341",
        "off-session charges decline (card_declined)",
        "card_declined",
        "generic_decline",
        "Your card was declined.",
    ),
    AUTHENTICATES: Card(
        AUTHENTICATES,
        "3184",
        "off-session charges need authentication (authentication_required)",
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
    ),
}
DEMO_CARDS = {"demo-essentials": DECLINES}


def spaced(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def card_number(text: str) -> str:
    return re.sub(r"[\s-]", "", text)


def cards_from_environment(value: str | None) -> dict[str, str]:
    """The per-account cards: the demo mapping, overridden by LOCAL_STRIPE_CARDS (JSON {account: card})."""
    overrides = json.loads(value) if value else {}
    if not isinstance(overrides, dict):
        raise ValueError("LOCAL_STRIPE_CARDS must be a JSON object {account_id: test card number}")
    cards = {**DEMO_CARDS, **{str(k): card_number(str(v)) for k, v in overrides.items()}}
    unknown = {k: v for k, v in cards.items() if v not in CARDS}
    if unknown:
        raise ValueError(f"LOCAL_STRIPE_CARDS names cards the stand-in does not know: {unknown}")
    return cards


def describe(cards: Mapping[str, str]) -> str:
    """The test cards and which account's pay page preselects which, for the start-up banner."""
    lines = [f"  {spaced(card.number)}   {card.behaviour}" for card in CARDS.values()]
    lines += [f"  {account:<19} pays with {spaced(number)}" for account, number in sorted(cards.items())]
    lines.append(f"  {'any other account':<19} pays with {spaced(SUCCEEDS)}")
    return "\n".join(lines)


def signature_header(payload: str, secret: str, at: int) -> str:
    """Stripe-Signature: t=<unix>,v1=<HMAC-SHA256 of "<t>.<payload>" with the endpoint's secret>."""
    digest = hmac.new(secret.encode(), f"{at}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back into objects: a[b][0][c]=v → {"a": {"b": [{"c": "v"}]}}."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    decoded = _lists(root)
    assert isinstance(decoded, dict)
    return decoded


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


class StripeError(Exception):
    """Answered as Stripe's error shape: {"error": {"type", "message", ...}}."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def invalid(message: str, param: str | None = None, code: str = "parameter_invalid") -> StripeError:
    return StripeError(
        400, {"type": "invalid_request_error", "code": code, "message": message, "param": param}
    )


def missing(kind: str, identifier: str, param: str = "id") -> StripeError:
    return StripeError(
        404 if param == "id" else 400,
        {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such {kind}: '{identifier}'",
            "param": param,
        },
    )


def _json(body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    sent = {"Request-Id": new_id("req_"), **(headers or {})}
    return Response(json.dumps(body), status, sent, content_type="application/json")


class StripeStandIn:
    """A WSGI app holding Stripe's objects in memory; webhooks go out from their own thread."""

    def __init__(
        self,
        *,
        base_url: str,
        webhook_url: str,
        webhook_secret: str,
        cards: Mapping[str, str],
        webhook_delay: float,
    ) -> None:
        self.base_url = base_url  # where the pay pages are served
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.cards = dict(cards)
        self.webhook_delay = webhook_delay
        self.customers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, list[dict[str, Any]]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self._card_of: dict[str, str] = {}  # PaymentMethod id → test card number (Stripe never shows it)
        self._intent_data: dict[str, dict[str, Any]] = {}  # session id → its payment_intent_data
        self.events: list[dict[str, Any]] = []
        self._replies: dict[str, tuple[str, int, str]] = {}  # idempotency key → (request, status, body)
        self._lock = threading.RLock()
        self._urls = Map(
            [
                Rule("/v1/customers", endpoint="create_customer", methods=["POST"]),
                Rule("/v1/customers/<id>", endpoint="get_customer", methods=["GET"]),
                Rule("/v1/checkout/sessions", endpoint="create_session", methods=["POST"]),
                Rule("/v1/checkout/sessions/<id>", endpoint="get_session", methods=["GET"]),
                Rule("/v1/payment_intents", endpoint="create_intent", methods=["POST"]),
                Rule("/v1/payment_intents/<id>", endpoint="get_intent", methods=["GET"]),
                Rule("/checkout/<id>", endpoint="page", methods=["GET"]),
                Rule("/checkout/<id>", endpoint="pay", methods=["POST"]),
                Rule("/events", endpoint="list_events", methods=["GET"]),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, arguments = self._urls.bind_to_environ(environ).match()
        except HTTPException as refused:
            message = f"Unrecognized request URL ({request.method}: {request.path})."
            error = {"type": "invalid_request_error", "message": message}
            response = _json({"error": error}, refused.code or 404)
        else:
            if endpoint == "page":
                response = self.page(arguments["id"])
            elif endpoint == "pay":
                response = self.pay(arguments["id"], request.form.get("card"))
            elif endpoint == "list_events":
                response = self.list_events()
            else:
                response = self.api(request, endpoint, arguments.get("id"))
        return response(environ, start_response)

    # ---- the API ------------------------------------------------------------------------------------

    def api(self, request: Request, endpoint: str, identifier: str | None) -> Response:
        """Authenticate, replay by Idempotency-Key, then run the endpoint; errors take Stripe's shape."""
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not key.startswith("sk_test_"):
            error = {"type": "invalid_request_error", "message": "Invalid API Key provided (test keys only)."}
            return _json({"error": error}, 401)
        params = decode_form(request.form.items(multi=True))
        idempotency_key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        fingerprint = json.dumps([request.path, params], sort_keys=True)
        with self._lock:
            if idempotency_key and idempotency_key in self._replies:
                first, status, body = self._replies[idempotency_key]
                if first != fingerprint:
                    error = {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with. Try using a key other than '{idempotency_key}'.",
                    }
                    return _json({"error": error}, 400)
                return Response(
                    body, status, {"Idempotent-Replayed": "true"}, content_type="application/json"
                )
            try:
                status, answer = 200, getattr(self, endpoint)(params, identifier)
            except StripeError as failed:
                status, answer = failed.status, {"error": failed.error}
            body = json.dumps(answer)
            # Stripe keeps the first answer for a key, errors included, unless the request never ran (400s).
            if idempotency_key and status != 400:
                self._replies[idempotency_key] = (fingerprint, status, body)
        return Response(body, status, {"Request-Id": new_id("req_")}, content_type="application/json")

    def create_customer(self, params: dict[str, Any], _: str | None) -> dict[str, Any]:
        customer: dict[str, Any] = {
            "id": new_id("cus_"),
            "object": "customer",
            "created": int(time.time()),
            "email": params.get("email"),
            "invoice_settings": {"default_payment_method": None},
            "livemode": False,
            "metadata": params.get("metadata") or {},
        }
        self.customers[customer["id"]] = customer
        return customer

    def get_customer(self, _: dict[str, Any], identifier: str | None) -> dict[str, Any]:
        return self._find(self.customers, "customer", identifier)

    def create_session(self, params: dict[str, Any], _: str | None) -> dict[str, Any]:
        if params.get("mode") != "payment":
            raise invalid("The stand-in plays mode=payment sessions only.", "mode")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise invalid("line_items is required in payment mode.", "line_items", "parameter_missing")
        if not params.get("success_url"):
            raise invalid("success_url is required.", "success_url", "parameter_missing")
        customer = params.get("customer")
        if customer and customer not in self.customers:
            raise missing("customer", customer, "customer")
        lines = [self._line(item, n) for n, item in enumerate(items)]
        total = sum(line["amount_total"] for line in lines)
        session_id = new_id("cs_test_")
        now = int(time.time())
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": lines[0]["currency"],
            "customer": customer,
            "expires_at": now + 24 * 3600,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "mode": "payment",
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params["success_url"],
            "url": f"{self.base_url}/checkout/{session_id}",
        }
        self.sessions[session_id] = session
        self.line_items[session_id] = lines
        intent_data = params.get("payment_intent_data") or {}
        self._intent_data[session_id] = intent_data if isinstance(intent_data, dict) else {}
        return session

    @staticmethod
    def _line(item: Any, n: int) -> dict[str, Any]:
        param = f"line_items[{n}]"
        price = item.get("price_data") if isinstance(item, dict) else None
        if not isinstance(price, dict):
            raise invalid("The stand-in needs price_data on every line item.", f"{param}[price_data]")
        try:
            unit, quantity = int(price["unit_amount"]), int(item.get("quantity", 1))
        except (KeyError, ValueError) as error:
            raise invalid("unit_amount and quantity must be integers.", param) from error
        if price.get("currency") != "usd" or unit < 1 or not 1 <= quantity <= 100:
            raise invalid("usd, a positive unit_amount and a quantity of 1-100, please.", param)
        return {
            "id": new_id("li_"),
            "object": "item",
            "amount_total": unit * quantity,
            "currency": "usd",
            "description": str((price.get("product_data") or {}).get("name") or "Item"),
            "price": {"unit_amount": unit, "currency": "usd"},
            "quantity": quantity,
        }

    def get_session(self, _: dict[str, Any], identifier: str | None) -> dict[str, Any]:
        return self._find(self.sessions, "checkout.session", identifier)

    def get_intent(self, _: dict[str, Any], identifier: str | None) -> dict[str, Any]:
        return self._find(self.intents, "payment_intent", identifier)

    @staticmethod
    def _find(objects: Mapping[str, dict[str, Any]], kind: str, identifier: str | None) -> dict[str, Any]:
        found = objects.get(identifier or "")
        if found is None:
            raise missing(kind, identifier or "")
        return found

    def create_intent(self, params: dict[str, Any], _: str | None) -> dict[str, Any]:
        """An off-session charge of a saved card: it succeeds, declines or wants the owner, by test card."""
        try:
            amount = int(params["amount"])
        except (KeyError, ValueError) as error:
            raise invalid("amount must be a positive integer.", "amount") from error
        if params.get("currency") != "usd" or amount < 1:
            raise invalid("usd and a positive amount, please.", "currency")
        customer, method_id = params.get("customer"), params.get("payment_method")
        if customer not in self.customers:
            raise missing("customer", str(customer), "customer")
        method = self.payment_methods.get(str(method_id))
        if method is None:
            raise missing("PaymentMethod", str(method_id), "payment_method")
        if method["customer"] != customer:
            raise invalid(
                "The PaymentMethod is not attached to this customer; save it with setup_future_usage.",
                "payment_method",
            )
        if params.get("confirm") != "true" or params.get("off_session") != "true":
            raise invalid("The stand-in plays confirm=true, off_session=true charges only.", "confirm")
        intent = self._intent(amount, customer, method["id"], params.get("metadata") or {})
        intent["description"] = params.get("description")
        card = CARDS[self._card_of[method["id"]]]
        if card.code is None:
            self._succeed(intent)
            self._send([self._event("payment_intent.succeeded", intent)])
            return intent
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": card.code,
            "decline_code": card.decline_code,
            "message": card.message,
        }
        if card.code == "card_declined":
            intent["latest_charge"] = new_id("ch_")  # a declined card leaves a failed charge
        self._send([self._event("payment_intent.payment_failed", intent)])
        raise StripeError(
            402,
            {
                "type": "card_error",
                "code": card.code,
                "decline_code": card.decline_code,
                "message": card.message,
                "charge": intent["latest_charge"],
                "payment_intent": intent,
                "payment_method": method,
            },
        )

    def _intent(self, amount: int, customer: str | None, method: str, metadata: Any) -> dict[str, Any]:
        intent = {
            "id": new_id("pi_"),
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "automatic_async",
            "client_secret": None,
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": "usd",
            "customer": customer,
            "description": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "payment_method": method,
            "payment_method_types": ["card"],
            "setup_future_usage": None,
            "status": "requires_payment_method",
        }
        intent["client_secret"] = f"{intent['id']}_secret_{uuid.uuid4().hex[:16]}"
        self.intents[intent["id"]] = intent
        return intent

    @staticmethod
    def _succeed(intent: dict[str, Any]) -> None:
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=new_id("ch_"))

    # ---- the pay page -------------------------------------------------------------------------------

    def _account_card(self, session: Mapping[str, Any]) -> str:
        account = (session.get("metadata") or {}).get("account_id") or session.get("client_reference_id")
        return self.cards.get(str(account), SUCCEEDS)

    def page(self, session_id: str) -> Response:
        with self._lock:
            session = self.sessions.get(session_id)
            lines = list(self.line_items.get(session_id, []))
        if session is None:
            return _page("Checkout not found", "<p>This checkout session does not exist.</p>", 404)
        if session["status"] == "complete":
            back = html.escape(_success_url(session))
            body = f'<p>This checkout is already paid.</p><p><a href="{back}">Back to the dashboard</a></p>'
            return _page("Already paid", body)
        preselected = self._account_card(session)
        rows = "".join(
            f"<tr><td>{html.escape(line['description'])}</td><td>{line['quantity']}</td>"
            f"<td>{_usd(line['price']['unit_amount'])}</td><td>{_usd(line['amount_total'])}</td></tr>"
            for line in lines
        )
        options = "".join(
            f'<option value="{card.number}"{" selected" if card.number == preselected else ""}>'
            f"{spaced(card.number)}: {html.escape(card.behaviour)}</option>"
            for card in CARDS.values()
        )
        saves = (self._intent_data.get(session_id) or {}).get("setup_future_usage") == "off_session"
        note = "This card is saved for auto-recharge." if saves else "This card is not saved."
        cancel = html.escape(str(session.get("cancel_url") or ""))
        body = f"""<table>
<thead><tr><th>Item</th><th>Quantity</th><th>Unit price</th><th>Amount</th></tr></thead>
<tbody>{rows}</tbody>
</table>
<p class="total">Total: {_usd(session["amount_total"])} USD</p>
<form method="post" action="{html.escape(f"{self.base_url}/checkout/{session_id}")}">
<label for="card">Test card</label>
<select id="card" name="card">{options}</select>
<p class="note">{note} Local stand-in: no real card is charged.</p>
<button type="submit">Pay</button>
</form>
<p><a href="{cancel}">Cancel and go back</a></p>"""
        return _page("Pay for your SMS credits", body)

    def pay(self, session_id: str, card: str | None) -> Response:
        """Pay once: a second submission (a double click, a replayed form) only redirects again."""
        with self._lock:
            session = self.sessions.get(session_id)
            if session is None:
                return _page("Checkout not found", "<p>This checkout session does not exist.</p>", 404)
            number = card_number(card) if card else self._account_card(session)
            if number not in CARDS:
                return _page("Unknown test card", "<p>Choose one of the stand-in's test cards.</p>", 400)
            if session["status"] != "complete":
                self._pay(session, number)
            target = _success_url(session)
        return Response("", 303, {"Location": target})

    def _pay(self, session: dict[str, Any], number: str) -> None:
        intent_data = self._intent_data.get(session["id"]) or {}
        customer = session.get("customer")
        saves = intent_data.get("setup_future_usage") == "off_session" and bool(customer)
        method: dict[str, Any] = {
            "id": new_id("pm_"),
            "object": "payment_method",
            "card": {"brand": "visa", "exp_month": 12, "exp_year": 2034, "last4": CARDS[number].last4},
            "created": int(time.time()),
            # Attached only when the session saves the card, as Checkout does with setup_future_usage.
            "customer": customer if saves else None,
            "livemode": False,
            "type": "card",
        }
        self.payment_methods[method["id"]] = method
        self._card_of[method["id"]] = number
        intent = self._intent(
            session["amount_total"], customer, method["id"], intent_data.get("metadata") or {}
        )
        intent["setup_future_usage"] = intent_data.get("setup_future_usage")
        self._succeed(intent)
        session.update(payment_intent=intent["id"], payment_status="paid", status="complete", url=None)
        log.info(
            "%s paid %s with %s%s",
            session["id"],
            _usd(session["amount_total"]),
            spaced(number),
            f"; saved as {method['id']} for {customer}" if saves else "",
        )
        self._send(
            [
                self._event("checkout.session.completed", session),
                self._event("payment_intent.succeeded", intent),
            ]
        )

    # ---- webhooks ---------------------------------------------------------------------------------------

    def _event(self, kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": stripe.api_version,
            "created": int(time.time()),
            "data": {"object": json.loads(json.dumps(obj))},  # a snapshot: the object changes later
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }

    def _send(self, events: list[dict[str, Any]]) -> None:
        """Record the events, then deliver them in order from another thread, after this request answers:
        the gateway runs one function at a time, and the function calling us is still running."""
        records = [{"event": event, "delivery": "pending"} for event in events]
        with self._lock:
            self.events.extend(records)
        threading.Thread(target=self._deliver, args=(records,), name="stripe-webhooks", daemon=True).start()

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            time.sleep(self.webhook_delay)
            payload = json.dumps(record["event"])
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature_header(payload, self.webhook_secret, int(time.time())),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            try:
                answer = requests.post(self.webhook_url, data=payload.encode(), headers=headers, timeout=30)
            except requests.RequestException as failure:
                log.warning("%s could not be delivered: %s", record["event"]["type"], failure)
                outcome: int | str = "unreachable"
            else:
                log.info("%s %s → %d", record["event"]["id"], record["event"]["type"], answer.status_code)
                outcome = answer.status_code
            with self._lock:
                record["delivery"] = outcome

    def list_events(self) -> Response:
        with self._lock:
            data = [{**record["event"], "delivery": record["delivery"]} for record in reversed(self.events)]
        return _json({"object": "list", "data": data, "has_more": False, "url": "/v1/events"})


def _success_url(session: Mapping[str, Any]) -> str:
    return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", str(session["id"]))


def _usd(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


PAGE_STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ddd}
.total{font-size:1.25rem;font-weight:600}label{display:block;font-weight:600;margin-top:1rem}
select{font-size:1rem;padding:.4rem;width:100%}.note{color:#555;font-size:.9rem}
button{font-size:1.1rem;padding:.6rem 2.5rem;margin-top:.5rem;background:#635bff;color:#fff;border:0;border-radius:6px}
.banner{background:#fff4d6;padding:.4rem .8rem;border-radius:4px;font-size:.9rem}"""


def _page(title: str, body: str, status: int = 200) -> Response:
    document = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head>
<body>
<p class="banner">Stripe stand-in (local mode, test mode only)</p>
<h1>{html.escape(title)}</h1>
{body}
</body>
</html>
"""
    return Response(document, status, content_type="text/html; charset=utf-8")


def from_environment(base_url: str) -> StripeStandIn:
    """The stand-in as local.run mounts it: webhooks to PUBLIC_BASE_URL, signed with STRIPE_WEBHOOK_SECRET."""
    return StripeStandIn(
        base_url=base_url,
        webhook_url=os.environ["PUBLIC_BASE_URL"].rstrip("/") + "/webhooks/stripe",
        webhook_secret=os.environ["STRIPE_WEBHOOK_SECRET"],
        cards=cards_from_environment(os.environ.get("LOCAL_STRIPE_CARDS")),
        webhook_delay=float(os.environ.get("LOCAL_STRIPE_WEBHOOK_DELAY") or 0.2),
    )
