"""A fake Stripe API behind the real SDK (a recording stripe.HTTPClient), signed webhook deliveries, fixtures."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from smscredits import runtime
from smscredits.adapters.stripe_payments import StripePayments, make_client
from smscredits.settings import stripe_credentials
from tests.conftest import Clock
from tests.functions import EVENTS, Context, admin, call, event, load_function, user

WEBHOOK_SECRET = "whsec_test_secret"


class FakeStripeHttp(stripe.HTTPClient):
    """Plays the Stripe endpoints the service calls; replays answers per idempotency key like Stripe does.

    card: succeed | decline | authentication_required | detached | error500 (what an off-session charge does);
    lost_answer: the charge succeeds at Stripe but its answer never reaches the caller; processing: it is
    answered still processing, and succeeds at Stripe right after. `forget_idempotency_keys()` plays Stripe
    pruning keys older than 24 hours. A succeeded PaymentIntent's latest charge is `ch_<intent id>`, expanded
    (with its receipt_url, `receipt_of`) when the request asks expand[]=latest_charge; `receipts_fail` makes
    every such request answer 500."""

    name = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.card = "succeed"
        self.fail_with: int | None = None  # every request answers this status (500) or raises (0)
        self._answers: dict[str, tuple[str, int, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._n = 0
        self.intents: list[str] = []  # ids of the PaymentIntents created
        self.created: dict[str, dict[str, Any]] = {}  # each PaymentIntent as created, whatever the answer was
        self.receipts_fail = False

    def request(self, method: str, url: str, headers: Any, post_data: Any = None, **_: Any) -> Any:
        parts = urlsplit(url)
        params = dict(parse_qsl(post_data.decode() if isinstance(post_data, bytes) else post_data or ""))
        params.update(parse_qsl(parts.query))
        key = (headers or {}).get("Idempotency-Key")
        with self._lock:
            self.requests.append(
                {"method": method, "path": parts.path, "params": params, "idempotency_key": key}
            )
            if key and key in self._answers:
                return self._answers[key]
            if self.fail_with == 0:
                raise stripe.APIConnectionError("connection refused", should_retry=False)
            if self.fail_with:
                return _json({"error": {"type": "api_error", "message": "boom"}}, self.fail_with)
            self._n += 1
            answer = self._route(method, parts.path, params, self._n)
            if key:
                self._answers[key] = answer
            if self.card == "lost_answer" and parts.path == "/v1/payment_intents" and method == "post":
                raise stripe.APIConnectionError("read timed out", should_retry=False)
            return answer

    def _route(
        self, method: str, path: str, params: dict[str, str], n: int
    ) -> tuple[str, int, dict[str, str]]:
        if path == "/v1/customers":
            return _json({"id": f"cus_test_{n}", "object": "customer"})
        if path == "/v1/checkout/sessions":
            sid = f"cs_test_{n}"
            return _json(
                {"id": sid, "object": "checkout.session", "url": f"https://checkout.stripe.com/c/pay/{sid}"}
            )
        if method == "get" and path == "/v1/payment_intents/search":
            found = self._search(params["query"])
            if params.get("expand[0]") == "data.latest_charge":
                found["data"] = [_with_charge(intent) for intent in found["data"]]
            return _json(found)
        if method == "get" and path.startswith("/v1/payment_intents/"):
            intent_id = path.rsplit("/", 1)[1]
            intent = self.created.get(intent_id) or {
                "id": intent_id,
                "object": "payment_intent",
                "payment_method": "pm_card_saved",
                "status": "succeeded",
                "latest_charge": f"ch_{intent_id}",
            }
            if params.get("expand[0]") != "latest_charge":
                return _json(intent)
            if self.receipts_fail:
                return _json({"error": {"type": "api_error", "message": "boom"}}, 500)
            return _json(_with_charge(intent))
        if path == "/v1/payment_intents":
            answer = self._charge(params, n)
            if params.get("expand[0]") == "latest_charge" and answer[1] == 200:
                return _json(_with_charge(json.loads(answer[0])))
            return answer
        if method == "get" and path.startswith("/v1/setup_intents/"):
            return _json(
                {"id": path.rsplit("/", 1)[1], "object": "setup_intent", "payment_method": "pm_card_setup"}
            )
        return _json({"error": {"type": "invalid_request_error", "message": f"no route {path}"}}, 404)

    def _charge(self, params: dict[str, str], n: int) -> tuple[str, int, dict[str, str]]:
        metadata = {k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")}
        intent = {
            "id": f"pi_rch_{n}",
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "amount_received": int(params["amount"]),
            "currency": params["currency"],
            "customer": params["customer"],
            "payment_method": params["payment_method"],
            "metadata": metadata,
            "status": "succeeded",
            "latest_charge": f"ch_pi_rch_{n}",
        }
        self.intents.append(str(intent["id"]))
        self.created[str(intent["id"])] = intent
        if self.card == "processing":  # answered as processing; it succeeds at Stripe right after
            self.created[str(intent["id"])] = {**intent}
            return _json({**intent, "status": "processing", "amount_received": 0})
        if self.card == "detached":  # the saved card was removed from the customer
            missing: dict[str, Any] = {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": "No such PaymentMethod",
            }
            return _json({"error": missing}, 400)
        if self.card == "error500":
            return _json({"error": {"type": "api_error", "message": "boom"}}, 500)
        if self.card in ("decline", "authentication_required"):
            code = "card_declined" if self.card == "decline" else "authentication_required"
            failed = {**intent, "amount_received": 0, "status": "requires_payment_method"}
            error = {
                "type": "card_error",
                "code": code,
                "decline_code": code,
                "message": "The card failed.",
                "payment_intent": failed,
            }
            return _json({"error": error}, 402)
        return _json(intent)

    def _search(self, query: str) -> dict[str, Any]:
        """Stripe's search, for the one query the service makes: metadata['recharge_id']:'<id>'."""
        prefix = "metadata['recharge_id']:'"
        assert query.startswith(prefix) and query.endswith("'"), query
        wanted = query[len(prefix) : -1]
        found = [i for i in self.created.values() if i["metadata"].get("recharge_id") == wanted]
        return {
            "object": "search_result",
            "data": found,
            "has_more": False,
            "url": "/v1/payment_intents/search",
        }

    def forget_idempotency_keys(self) -> None:
        with self._lock:
            self._answers.clear()

    def answer(self, idempotency_key: str) -> str:
        """The body of the first answer given to this key (what a replay gets)."""
        return self._answers[idempotency_key][0]

    @property
    def charges(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/v1/payment_intents" and r["method"] == "post"]

    def of(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


def receipt_of(payment_intent: str) -> str:
    """The receipt_url of a PaymentIntent's charge, as the fake Stripe answers it."""
    return f"https://pay.stripe.com/receipts/payment/{payment_intent}"


def _with_charge(intent: dict[str, Any]) -> dict[str, Any]:
    """The PaymentIntent with its latest charge expanded (a succeeded one's charge has a receipt)."""
    if not isinstance(intent.get("latest_charge"), str) or intent.get("status") != "succeeded":
        return intent
    charge = {
        "id": intent["latest_charge"],
        "object": "charge",
        "paid": True,
        "payment_intent": intent["id"],
        "receipt_url": receipt_of(str(intent["id"])),
    }
    return {**intent, "latest_charge": charge}


def _json(body: dict[str, Any], status: int = 200) -> tuple[str, int, dict[str, str]]:
    return json.dumps(body), status, {"request-id": "req_test"}


@pytest.fixture
def stripe_api(service: Clock, monkeypatch: pytest.MonkeyPatch) -> FakeStripeHttp:
    fake = FakeStripeHttp()
    client = make_client("sk_test_fake", api_base=None, timeout=5, http_client=fake)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    stripe_credentials.cache_clear()
    runtime.use(runtime.container().replace(payments=StripePayments(client, WEBHOOK_SECRET)))
    return fake


def sign(payload: str, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    signature = hmac.new(secret.encode(), f"{at}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={signature}"


def stripe_event(name: str, **object_changes: Any) -> dict[str, Any]:
    body = json.loads((EVENTS / f"{name}.json").read_text())
    body = copy.deepcopy(body)
    body["data"]["object"].update(object_changes)
    return body


# The dispute fixture's balance transactions: the chargeback's withdrawal, and its reversal when it is won.
WITHDRAWAL = {
    "id": "txn_dp_withdrawal",
    "object": "balance_transaction",
    "amount": -1240,
    "currency": "usd",
    "description": "Chargeback withdrawal for ch_test_123",
    "type": "adjustment",
}
REINSTATEMENT = {
    **WITHDRAWAL,
    "id": "txn_dp_reinstatement",
    "amount": 1240,
    "description": "Chargeback reversal for ch_test_123",
}


def dispute_event(kind: str = "created", **object_changes: Any) -> dict[str, Any]:
    """charge.dispute.<kind> for the fixture's dispute (dp_test_123 of pi_test_123, the whole 1240 cents,
    funds withdrawn), its object changed by `object_changes`."""
    body = stripe_event("stripe_charge_dispute_created", **object_changes)
    body["type"] = f"charge.dispute.{kind}"
    body["id"] = f"evt_dp_{kind}"
    return body


def dispute_won(kind: str = "closed", **object_changes: Any) -> dict[str, Any]:
    """The dispute decided for us: status won, its funds withdrawn and reinstated."""
    return dispute_event(
        kind, **{"status": "won", "balance_transactions": [WITHDRAWAL, REINSTATEMENT], **object_changes}
    )


@dataclass(frozen=True)
class Checkout:
    """A Checkout Session bought through the API (so recorded as an order), and the events Stripe sends for it."""

    session_id: str
    customer: str
    amount: int
    metadata: dict[str, str]  # the session's, as the service sent them to Stripe
    intent_metadata: dict[str, str]  # its PaymentIntent's (payment_intent_data[metadata])
    payment_intent: str = "pi_test_123"  # the id the refund and dispute fixtures name

    @property
    def order_id(self) -> str:
        return self.metadata["order_id"]

    def session_event(
        self, name: str = "stripe_checkout_session_completed", **changes: Any
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "id": self.session_id,
            "amount_subtotal": self.amount,
            "amount_total": self.amount,
            "customer": self.customer,
            "client_reference_id": self.metadata["account_id"],
            "metadata": dict(self.metadata),
            "payment_intent": self.payment_intent,
        }
        return stripe_event(name, **{**fields, **changes})

    def intent_event(self, **changes: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "id": self.payment_intent,
            "amount": self.amount,
            "amount_received": self.amount,
            "customer": self.customer,
            "metadata": dict(self.intent_metadata),
        }
        return stripe_event("stripe_payment_intent_succeeded", **{**fields, **changes})


def checkout(
    stripe_api: FakeStripeHttp,
    *,
    account: str = "acct-1",
    region: str = "AU",
    packs: int = 2,
    key: str = "buy-1",
    payment_intent: str = "pi_test_123",
) -> Checkout:
    """POST /v1/packs/checkout, then the session as Stripe's events will carry it."""
    status, answer = call(
        "checkout",
        "checkout_post_session",
        body={"region": region, "quantity": packs},
        headers={"idempotency-key": key},
        claims=user(account),
    )
    assert status == 201, answer
    bought = session_of(stripe_api, payment_intent=payment_intent)
    assert bought.session_id == answer["session_id"]
    return bought


def session_of(stripe_api: FakeStripeHttp, index: int = -1, payment_intent: str = "pi_test_123") -> Checkout:
    """The index-th Checkout Session the fake Stripe created, as its events will carry it."""
    request = stripe_api.of("/v1/checkout/sessions")[index]
    params = request["params"]
    return Checkout(
        session_id=json.loads(stripe_api.answer(request["idempotency_key"]))["id"],
        customer=params["customer"],
        amount=int(params["line_items[0][price_data][unit_amount]"]) * int(params["line_items[0][quantity]"]),
        metadata=_nested(params, "metadata"),
        intent_metadata=_nested(params, "payment_intent_data[metadata]"),
        payment_intent=payment_intent,
    )


def _nested(params: dict[str, str], prefix: str) -> dict[str, str]:
    """Stripe's form encoding back to a map: metadata[account_id]=x → {"account_id": "x"}."""
    return {k[len(prefix) + 1 : -1]: v for k, v in params.items() if k.startswith(prefix + "[")}


def recharge_event(
    stripe_api: FakeStripeHttp, index: int = -1, name: str = "stripe_payment_intent_succeeded", **changes: Any
) -> dict[str, Any]:
    """The webhook Stripe sends for the index-th PaymentIntent it created (an off-session recharge)."""
    intent = stripe_api.created[stripe_api.intents[index]]
    fields = {k: intent[k] for k in ("id", "amount", "amount_received", "currency", "customer", "metadata")}
    return stripe_event(name, **{**fields, "payment_method": intent["payment_method"], **changes})


def deliver(
    body: dict[str, Any] | str, *, signature: str | None = None, encode: bool = False
) -> tuple[int, Any]:
    payload = body if isinstance(body, str) else json.dumps(body)
    request = event(
        "stripe_webhook_post", body=payload, headers={"stripe-signature": signature or sign(payload)}
    )
    if signature == "":
        del request["headers"]["stripe-signature"]
    if encode:
        request["body"] = base64.b64encode(payload.encode()).decode()
        request["isBase64Encoded"] = True
    response = load_function("stripe_webhook").lambda_handler(request, Context())
    return response["statusCode"], json.loads(response["body"])


def balance(account: str = "acct-1") -> dict[str, Any]:
    status, answer = call("account_api", "account_get_balance", claims=user(account))
    assert status == 200, answer
    return answer


def adjust(pool: str, credits: int, account: str = "acct-1", key: str = "adj") -> None:
    status, answer = call(
        "account_api",
        "admin_post_account",
        body={"pool": pool, "credits": credits, "reason": "test"},
        claims=admin(),
        path=f"/v1/admin/accounts/{account}/adjustments",
        path_params={"account_id": account},
        headers={"idempotency-key": key},
    )
    assert status in (200, 201), answer


def put_auto_recharge(body: dict[str, Any], account: str = "acct-1") -> tuple[int, Any]:
    return call("checkout", "account_put_auto_recharge", body=body, claims=user(account))


def get_auto_recharge(account: str = "acct-1") -> dict[str, Any]:
    status, answer = call("account_api", "account_get_auto_recharge", claims=user(account))
    assert status == 200, answer
    return answer
