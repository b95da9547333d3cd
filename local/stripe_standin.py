"""Stripe stand-in: customers, Checkout with a local pay page, off-session PaymentIntents, signed webhooks.

Served under /__local/stripe when STRIPE_SECRET_KEY is unset (local.run then points the SDK here through
STRIPE_API_BASE). State lives in memory; an Idempotency-Key replays the first answer, and the same key with
other parameters is refused as Stripe refuses it.

    POST /v1/customers                  GET /v1/customers/{id}
    POST /v1/checkout/sessions          GET /v1/checkout/sessions/{id}
    POST /v1/payment_intents            GET /v1/payment_intents/{id}     (off_session + confirm charges)
                                        GET /v1/setup_intents/{id}
                                        GET /v1/charges/{id}
    (expand[]=latest_charge works on a PaymentIntent's create and retrieve, expand[]=data.latest_charge on
    its search: the charge carries its receipt_url)
    GET  /checkout/{session id}         the pay page: one form, a test card, a Pay button
    POST /checkout/{session id}         pays, answers 303 to success_url, then sends the signed
                                        checkout.session.completed and payment_intent.succeeded
    (a mode=setup session's page has one form too: submitting it saves the card and sends the signed
    checkout.session.completed, mode setup, and setup_intent.succeeded)
    GET  /receipts/{charge id}          a paid charge's receipt page (its receipt_url)
    GET  /events                        every event sent, newest first, each with its `delivery` (for tests)

Test cards (the pay page always pays, as after a passed 3-D Secure check; the card chosen there is the one
saved for off-session charges when the session sets setup_future_usage=off_session):

    4242 4242 4242 4242   off-session charges succeed (payment_intent.succeeded)
    4000 0000 0000 0341   off-session charges decline: card_declined (payment_intent.payment_failed)
    4000 0027 6000 3184   off-session charges need the owner: authentication_required
    4000 0000 0000 0259   payments succeed, then are disputed as fraudulent: charge.dispute.created and
                          charge.dispute.funds_withdrawn follow each payment's events

The pay page preselects each account's card: demo-essentials 4000 0000 0000 0341, every other account
(demo-starter, demo-growth, ...) 4242 4242 4242 4242; demo-legacy cannot buy packs (legacy credit model).
LOCAL_STRIPE_CARDS='{"<account id>": "4000 0027 6000 3184"}' overrides it per account.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from local import stripe_pages as pages
from local.stripe_cards import CARDS, SUCCEEDS, card_number, cards_from_environment, describe, spaced
from local.stripe_webhooks import Webhooks, event
from local.stripe_wire import IdempotentApi, StripeError, decode_form, invalid, json_response, missing, new_id

__all__ = ["StripeStandIn", "cards_from_environment", "describe", "from_environment"]

log = logging.getLogger("local.stripe")


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
        self.cards = dict(cards)
        self.webhooks = Webhooks(url=webhook_url, secret=webhook_secret, delay=webhook_delay)
        self.customers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, list[dict[str, Any]]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self._card_of: dict[str, str] = {}  # PaymentMethod id → test card number (Stripe never shows it)
        self._intent_data: dict[str, dict[str, Any]] = {}  # session id → its payment_intent_data
        self._setup_data: dict[str, dict[str, Any]] = {}  # setup session id → its setup_intent_data
        self.setup_intents: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self.wire = IdempotentApi(self._lock)
        self._urls = Map(
            [
                Rule("/v1/customers", endpoint="create_customer", methods=["POST"]),
                Rule("/v1/customers/<id>", endpoint="get_customer", methods=["GET"]),
                Rule("/v1/checkout/sessions", endpoint="create_session", methods=["POST"]),
                Rule("/v1/checkout/sessions/<id>", endpoint="get_session", methods=["GET"]),
                Rule("/v1/payment_intents", endpoint="create_intent", methods=["POST"]),
                Rule("/v1/payment_intents/search", endpoint="search_intents", methods=["GET"]),
                Rule("/v1/payment_intents/<id>", endpoint="get_intent", methods=["GET"]),
                Rule("/v1/setup_intents/<id>", endpoint="get_setup_intent", methods=["GET"]),
                Rule("/v1/charges/<id>", endpoint="get_charge", methods=["GET"]),
                Rule("/receipts/<id>", endpoint="receipt", methods=["GET"]),
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
            response = json_response({"error": error}, refused.code or 404)
        else:
            if endpoint == "page":
                response = self.page(arguments["id"])
            elif endpoint == "pay":
                response = self.pay(arguments["id"], request.form.get("card"))
            elif endpoint == "receipt":
                response = self.receipt(arguments["id"])
            elif endpoint == "list_events":
                response = self.list_events()
            elif endpoint == "search_intents":
                response = self.search_intents(
                    request.args.get("query", ""), decode_form(request.args.items(multi=True)).get("expand")
                )
            else:
                run = getattr(self, endpoint)
                response = self.wire.answer(request, lambda params: run(params, arguments.get("id")))
        return response(environ, start_response)

    # ---- the API ------------------------------------------------------------------------------------

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
        if params.get("mode") == "setup":
            return self._setup_session(params)
        if params.get("mode") != "payment":
            raise invalid("The stand-in plays mode=payment and mode=setup sessions only.", "mode")
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
            "adaptive_pricing": {"enabled": _enabled(params.get("adaptive_pricing"))},
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

    def _setup_session(self, params: dict[str, Any]) -> dict[str, Any]:
        """A session that only saves a card for the customer (no line items, nothing charged)."""
        customer = params.get("customer")
        if not customer or customer not in self.customers:
            raise missing("customer", str(customer), "customer")
        if not params.get("success_url"):
            raise invalid("success_url is required.", "success_url", "parameter_missing")
        session_id = new_id("cs_test_")
        now = int(time.time())
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_total": None,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": params.get("currency"),
            "customer": customer,
            "expires_at": now + 24 * 3600,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "mode": "setup",
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "no_payment_required",
            "setup_intent": None,
            "status": "open",
            "success_url": params["success_url"],
            "url": f"{self.base_url}/checkout/{session_id}",
        }
        self.sessions[session_id] = session
        self._setup_data[session_id] = params.get("setup_intent_data") or {}
        return session

    def get_setup_intent(self, _: dict[str, Any], identifier: str | None) -> dict[str, Any]:
        return self._find(self.setup_intents, "setup_intent", identifier)

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

    def get_intent(self, params: dict[str, Any], identifier: str | None) -> dict[str, Any]:
        return self._expanded(self._find(self.intents, "payment_intent", identifier), params.get("expand"))

    def get_charge(self, _: dict[str, Any], identifier: str | None) -> dict[str, Any]:
        return self._find(self.charges, "charge", identifier)

    def _expanded(self, intent: dict[str, Any], expand: Any) -> dict[str, Any]:
        """The PaymentIntent as answered: `latest_charge` is the charge itself when asked for (a copy: the
        stored intent keeps the id)."""
        charge = self.charges.get(str(intent.get("latest_charge")))
        if charge is None or not isinstance(expand, list) or "latest_charge" not in expand:
            return intent
        return {**intent, "latest_charge": charge}

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
            self.webhooks.send([event("payment_intent.succeeded", intent), *self._disputes(intent, card)])
            return self._expanded(intent, params.get("expand"))
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": card.code,
            "decline_code": card.decline_code,
            "message": card.message,
        }
        if card.code == "card_declined":
            intent["latest_charge"] = self._charge(intent, paid=False)[
                "id"
            ]  # a declined card leaves a failed charge
        self.webhooks.send([event("payment_intent.payment_failed", intent)])
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

    def _succeed(self, intent: dict[str, Any]) -> None:
        charge = self._charge(intent, paid=True)
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge["id"])

    def _charge(self, intent: Mapping[str, Any], *, paid: bool) -> dict[str, Any]:
        """The charge a confirmation made; a paid one has its receipt page here (receipt_url)."""
        charge_id = new_id("ch_")
        method = self.payment_methods.get(str(intent.get("payment_method"))) or {}
        charge: dict[str, Any] = {
            "id": charge_id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if paid else 0,
            "amount_refunded": 0,
            "created": int(time.time()),
            "currency": intent["currency"],
            "customer": intent.get("customer"),
            "description": intent.get("description"),
            "disputed": False,
            "livemode": False,
            "metadata": intent.get("metadata") or {},
            "paid": paid,
            "payment_intent": intent["id"],
            "payment_method": intent.get("payment_method"),
            "payment_method_details": {"type": "card", "card": method.get("card")},
            "receipt_url": f"{self.base_url}/receipts/{charge_id}" if paid else None,
            "refunded": False,
            "status": "succeeded" if paid else "failed",
        }
        self.charges[charge_id] = charge
        return charge

    def _disputes(self, intent: Mapping[str, Any], card: Any) -> list[dict[str, Any]]:
        """The events of a payment with the disputing test card: the dispute opened and its funds withdrawn
        (Stripe sends both; they describe the same step)."""
        if not card.disputed:
            return []
        charge = self.charges[str(intent["latest_charge"])]
        charge["disputed"] = True
        amount = int(charge["amount"])
        dispute = {
            "id": new_id("dp_"),
            "object": "dispute",
            "amount": amount,
            "balance_transactions": [
                {"id": new_id("txn_"), "object": "balance_transaction", "amount": -amount, "fee": 1500}
            ],
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "payment_intent": intent["id"],
            "reason": "fraudulent",
            "status": "needs_response",
        }
        log.info("%s disputed as fraudulent (%s)", charge["id"], dispute["id"])
        return [event("charge.dispute.created", dispute), event("charge.dispute.funds_withdrawn", dispute)]

    # ---- the pay page -------------------------------------------------------------------------------

    def _account_card(self, session: Mapping[str, Any]) -> str:
        account = (session.get("metadata") or {}).get("account_id") or session.get("client_reference_id")
        return self.cards.get(str(account), SUCCEEDS)

    def page(self, session_id: str) -> Response:
        with self._lock:
            session = self.sessions.get(session_id)
            lines = list(self.line_items.get(session_id, []))
        if session is None:
            return pages.not_found()
        if session["status"] == "complete":
            return pages.already_paid(session)
        if session["mode"] == "setup":
            return pages.setup_page(
                session,
                action=f"{self.base_url}/checkout/{session_id}",
                preselected=self._account_card(session),
            )
        return pages.checkout_page(
            session,
            lines,
            action=f"{self.base_url}/checkout/{session_id}",
            preselected=self._account_card(session),
            saves_card=(self._intent_data.get(session_id) or {}).get("setup_future_usage") == "off_session",
        )

    def pay(self, session_id: str, card: str | None) -> Response:
        """Pay once: a second submission (a double click, a replayed form) only redirects again."""
        with self._lock:
            session = self.sessions.get(session_id)
            if session is None:
                return pages.not_found()
            number = card_number(card) if card else self._account_card(session)
            if number not in CARDS:
                return pages.unknown_card()
            if session["status"] != "complete" and session["mode"] == "setup":
                self._save_card(session, number)
            elif session["status"] != "complete":
                self._pay(session, number)
            target = pages.success_url(session)
        return Response("", 303, {"Location": target})

    def _pay(self, session: dict[str, Any], number: str) -> None:
        intent_data = self._intent_data.get(session["id"]) or {}
        customer = session.get("customer")
        saves = intent_data.get("setup_future_usage") == "off_session" and bool(customer)
        # Attached only when the session saves the card, as Checkout does with setup_future_usage.
        method = self._payment_method(number, customer if saves else None)
        intent = self._intent(
            session["amount_total"], customer, method["id"], intent_data.get("metadata") or {}
        )
        intent["setup_future_usage"] = intent_data.get("setup_future_usage")
        intent["description"] = ", ".join(line["description"] for line in self.line_items[session["id"]])
        self._succeed(intent)
        session.update(payment_intent=intent["id"], payment_status="paid", status="complete", url=None)
        log.info(
            "%s paid %s with %s%s",
            session["id"],
            pages.usd(session["amount_total"]),
            spaced(number),
            f"; saved as {method['id']} for {customer}" if saves else "",
        )
        self.webhooks.send(
            [
                event("checkout.session.completed", session),
                event("payment_intent.succeeded", intent),
                *self._disputes(intent, CARDS[number]),
            ]
        )

    def search_intents(self, query: str, expand: Any) -> Response:
        """Stripe's search, for the one query the service makes (a recharge's PaymentIntents by its id);
        unlike Stripe's, the answer is immediate."""
        match = re.fullmatch(r"metadata\['(\w+)'\]:'((?:[^'\\]|\\.)*)'", query)
        if match is None:
            return json_response(
                {"error": {"type": "invalid_request_error", "message": "unsupported query"}}, 400
            )
        key, value = match.group(1), re.sub(r"\\(.)", r"\1", match.group(2))
        inner = [field.removeprefix("data.") for field in expand] if isinstance(expand, list) else None
        with self._lock:
            found = [
                self._expanded(intent, inner)
                for intent in self.intents.values()
                if (intent.get("metadata") or {}).get(key) == value
            ]
        return json_response({"object": "search_result", "data": found, "has_more": False, "next_page": None})

    def _save_card(self, session: dict[str, Any], number: str) -> None:
        """Complete a setup session: the card is attached to the customer by a succeeded SetupIntent."""
        customer = session["customer"]
        method = self._payment_method(number, customer)
        intent = {
            "id": new_id("seti_"),
            "object": "setup_intent",
            "created": int(time.time()),
            "customer": customer,
            "livemode": False,
            "metadata": self._setup_data.get(session["id"], {}).get("metadata") or {},
            "payment_method": method["id"],
            "payment_method_types": ["card"],
            "status": "succeeded",
            "usage": "off_session",
        }
        self.setup_intents[intent["id"]] = intent
        session.update(setup_intent=intent["id"], status="complete", url=None)
        log.info("%s saved %s as %s for %s", session["id"], spaced(number), method["id"], customer)
        self.webhooks.send(
            [event("checkout.session.completed", session), event("setup_intent.succeeded", intent)]
        )

    def _payment_method(self, number: str, customer: str | None) -> dict[str, Any]:
        method: dict[str, Any] = {
            "id": new_id("pm_"),
            "object": "payment_method",
            "card": {"brand": "visa", "exp_month": 12, "exp_year": 2034, "last4": CARDS[number].last4},
            "created": int(time.time()),
            "customer": customer,
            "livemode": False,
            "type": "card",
        }
        self.payment_methods[method["id"]] = method
        self._card_of[method["id"]] = number
        return method

    def receipt(self, charge_id: str) -> Response:
        with self._lock:
            charge = self.charges.get(charge_id)
            charge = dict(charge) if charge is not None and charge["paid"] else None
        return pages.receipt_page(charge) if charge is not None else pages.receipt_not_found()

    def list_events(self) -> Response:
        return json_response(
            {"object": "list", "data": self.webhooks.newest_first(), "has_more": False, "url": "/v1/events"}
        )


def _enabled(setting: Any) -> bool:
    """adaptive_pricing[enabled] as form-encoded ("false") or JSON; absent, Stripe uses the dashboard setting
    (taken here as on)."""
    value = setting.get("enabled", True) if isinstance(setting, dict) else True
    return value not in (False, "false")


def from_environment(base_url: str) -> StripeStandIn:
    """The stand-in as local.run mounts it: webhooks to PUBLIC_BASE_URL, signed with STRIPE_WEBHOOK_SECRET."""
    return StripeStandIn(
        base_url=base_url,
        webhook_url=os.environ["PUBLIC_BASE_URL"].rstrip("/") + "/webhooks/stripe",
        webhook_secret=os.environ["STRIPE_WEBHOOK_SECRET"],
        cards=cards_from_environment(os.environ.get("LOCAL_STRIPE_CARDS")),
        webhook_delay=float(os.environ.get("LOCAL_STRIPE_WEBHOOK_DELAY") or 0.2),
    )
