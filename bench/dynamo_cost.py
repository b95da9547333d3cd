"""DynamoDB cost per operation: requests, read and write units of each use case, through its handler, on moto."""

from __future__ import annotations

import math
import os
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Row, Section, announce

TABLE = "CreditsTable"
AU = "+61491570110"
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
READS = ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems")
_RETURNS_CAPACITY = {*WRITES, *READS}


@dataclass
class Cost:
    """What one operation asked of DynamoDB: requests by name, units derived from item sizes, moto's own."""

    requests: Counter[str] = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0
    moto_units: float = 0.0  # ConsumedCapacity as moto reports it (fixed per call; none for transactions)

    @property
    def reads(self) -> int:
        return sum(n for name, n in self.requests.items() if name in READS)

    @property
    def writes(self) -> int:
        return sum(n for name, n in self.requests.items() if name in WRITES)

    def describe(self) -> str:
        return ", ".join(f"{n} {name}" for name, n in sorted(self.requests.items())) or "none"


class Meter:
    """Counts each DynamoDB request through botocore's hooks and prices it by the sizes of the items it touched.

    moto answers ReturnConsumedCapacity with a constant per call (1 for a write or a Query, 0.5 for a
    GetItem, whatever the size) and with nothing for TransactWriteItems, so units are derived the way
    DynamoDB bills them: a write 1 WCU per started KB of the item (2 in a transaction, ConditionCheck
    included), a read 1 RCU per started 4 KB (half when eventually consistent; a Query sums its items)."""

    def __init__(self, client: Any, backend: Any) -> None:
        self.client = client
        self.backend = backend
        self.stripe: Any = None  # the fake Stripe HTTP client, to build the events of a checkout
        self.cost = Cost()
        self._params: dict[str, Any] = {}
        client.meta.events.register("provide-client-params.dynamodb.*", self._ask_capacity)
        client.meta.events.register("after-call.dynamodb.*", self._price)

    @contextmanager
    def measure(self) -> Iterator[Cost]:
        self.cost = measured = Cost()
        try:
            yield measured
        finally:
            self.cost = Cost()  # what runs between measurements (setting up the next one) is not counted

    def _ask_capacity(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in _RETURNS_CAPACITY:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")
        self._params = params

    def _price(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        name, params, cost = model.name, self._params, self.cost
        cost.requests[name] += 1
        consumed = parsed.get("ConsumedCapacity") or []
        for entry in consumed if isinstance(consumed, list) else [consumed]:
            cost.moto_units += float(entry.get("CapacityUnits", 0))
        strong = 1.0 if params.get("ConsistentRead") else 0.5
        if name == "GetItem":
            cost.read_units += strong * _units(_size(parsed.get("Item", {})), 4096)
        elif name in ("Query", "Scan"):
            cost.read_units += strong * _units(sum(_size(i) for i in parsed.get("Items", [])), 4096)
        elif name == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((_action, op),) = entry.items()
                cost.write_units += 2 * self._written_units(op["TableName"], op.get("Key"), op.get("Item"))
        elif name in ("PutItem", "UpdateItem", "DeleteItem"):
            cost.write_units += self._written_units(
                params["TableName"], params.get("Key"), params.get("Item")
            )

    def _written_units(self, table: str, key: dict[str, Any] | None, item: dict[str, Any] | None) -> int:
        if item is not None:
            return _units(_size(item), 1024)
        stored = self.backend.get_item(table, key)  # the item as it stands after the write
        return _units(stored.size() if stored is not None else 0, 1024)


def _size(item: dict[str, Any]) -> int:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return sum(len(name.encode()) + DynamoType(value).size() for name, value in item.items())


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


# ---- the service, in-process on moto -----------------------------------------------------------------


@contextmanager
def _service() -> Iterator[Meter]:
    """The handlers on moto's in-process DynamoDB with fake Twilio and Stripe HTTP clients (as tests do)."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        TABLE_NAME=TABLE,
        PUBLIC_BASE_URL="https://api.example.com",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING",
    )
    import boto3
    import pytest
    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends

    from local.moto_dynamo import create_tables, patch_moto
    from smscredits import runtime
    from smscredits.adapters.dynamo.ledger import DynamoLedger
    from smscredits.adapters.dynamo.reader import DynamoStatements
    from smscredits.adapters.stripe_payments import StripePayments, make_client
    from smscredits.adapters.twilio_sender import TwilioSender
    from smscredits.runtime import Container
    from smscredits.settings import TwilioCredentials
    from tests.integration.conftest import TWILIO_TOKEN, FakeTwilioHttp
    from tests.integration.stripe_support import WEBHOOK_SECRET, FakeStripeHttp

    patch_moto()
    warnings.filterwarnings("ignore", "No application metrics to publish")
    patch = pytest.MonkeyPatch()
    patch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    patch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client)
        runtime.reset()
        credentials = TwilioCredentials("AC" + "1" * 32, TWILIO_TOKEN, "+15005550006", None)
        twilio = FakeTwilioHttp()
        stripe_http = FakeStripeHttp()
        stripe = make_client("sk_test_fake", api_base=None, timeout=5, http_client=stripe_http)
        payments = StripePayments(stripe, WEBHOOK_SECRET)
        runtime.use(
            Container(
                ledger=DynamoLedger(TABLE, client=client),
                statements=DynamoStatements(TABLE, client=client),
                sender=TwilioSender(credentials, http_client=twilio),
                payments=payments,
            )
        )
        try:
            meter = Meter(client, dynamodb_backends["123456789012"]["us-east-1"])
            meter.stripe = stripe_http
            yield meter
        finally:
            patch.undo()
            runtime.reset()


def _send(account: str, body: str = "Hello") -> dict[str, Any]:
    from tests.functions import call, user

    status, answer = call(
        "send",
        "send_post_message",
        body={"to": AU, "body": body},
        headers={"idempotency-key": uuid.uuid4().hex},
        claims=user(account),
    )
    assert status == 202 and answer["status"] == "sent", answer
    return dict(answer)


def _quote(account: str) -> None:
    from tests.functions import call, user

    status, answer = call(
        "account_api", "account_post_quote", body={"to": AU, "body": "Hello"}, claims=user(account)
    )
    assert status == 200, answer


def _paid_session(meter: Meter, account: str) -> dict[str, Any]:
    """A checkout through the API (its order recorded), and the checkout.session.completed that pays it."""
    from tests.integration.stripe_support import checkout

    bought = checkout(
        meter.stripe, account=account, key=uuid.uuid4().hex, payment_intent=f"pi_{uuid.uuid4().hex}"
    )
    return bought.session_event(id=bought.session_id)


def _grant(body: dict[str, Any]) -> None:
    from tests.integration.stripe_support import deliver

    assert deliver(body)[1]["outcome"] == "granted"


def _ready_to_recharge(meter: Meter, account: str) -> None:
    """Auto-recharge on, a card on file (saved by a paid checkout), the account drained: the next send recharges."""
    from tests.integration.conftest import create
    from tests.integration.stripe_support import adjust, get_auto_recharge, put_auto_recharge

    create(account)
    settings = {"enabled": True, "regions": {"AU": {"packs": 1, "threshold": 0}}, "monthly_cap_cents": 5000}
    status, answer = put_auto_recharge(settings, account)
    assert status == 200, answer
    _grant(_paid_session(meter, account))
    assert get_auto_recharge(account)["card_on_file"]
    adjust("included", -50, account, key=f"drain-included-{account}")
    adjust("purchased:AU", -200, account, key=f"drain-au-{account}")


def _due_account(account: str) -> None:
    """An account whose period ended before today and was never refreshed (as the scale test seeds them)."""
    import boto3

    from smscredits.adapters.dynamo.codec import account_item
    from smscredits.adapters.dynamo.values import to_item
    from tests.conftest import new_account

    then = datetime.now(UTC) - timedelta(days=45)
    seed = new_account(account, anchor=then.date(), now=then)
    client = boto3.client("dynamodb", region_name="us-east-1")  # moto's mock_aws is on: its tables
    client.put_item(TableName=TABLE, Item=to_item(account_item(seed)))


def _refresh(account: str) -> None:
    from smscredits import runtime
    from smscredits.services.refresh import refresh_account

    ledger = runtime.container().ledger
    assert refresh_account(ledger, account, ledger.clock()).refreshed


def _measure(meter: Meter, action: Callable[[], Any]) -> Cost:
    with meter.measure() as cost:
        action()
    return cost


def run(quick: bool) -> Section:
    announce("DynamoDB cost per operation")
    from tests.integration.conftest import create
    from tests.integration.stripe_support import adjust

    section = Section(
        "DynamoDB cost per operation",
        "In-process: the handlers (`functions/*/app.py`) on moto's `mock_aws` with the tables of "
        "template.yaml, fake Twilio and Stripe HTTP clients behind the real SDKs (the integration tests' "
        "fakes). A botocore `after-call` hook counts requests by operation; `ReturnConsumedCapacity=TOTAL` "
        "is asked on every call, but moto answers a constant per call (1 per write or Query, 0.5 per "
        "GetItem) and nothing for TransactWriteItems, so units are derived from item sizes as DynamoDB "
        "bills them: 1 WCU per started KB written (2 inside a transaction, ConditionCheck included), "
        "1 RCU per started 4 KB read (0.5 if eventually consistent). Send is the warm steady state: the "
        "mean of 10 sends after 2 warm-up sends on the same account in the same process. The baseline is "
        "one bare conditional UpdateItem of a counter.",
    )
    with _service() as meter:
        create("bench-send")
        adjust("purchased:AU", 1000, "bench-send", key="bench-send-credits")
        for _ in range(2):
            _send("bench-send")
        sends = 10
        steady = _measure(meter, lambda: [_send("bench-send") for _ in range(sends)])
        ddb = meter.client
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": "BENCH"}, "sk": {"S": "COUNTER"}, "n": {"N": "0"}})
        bare = _measure(
            meter,
            lambda: ddb.update_item(
                TableName=TABLE,
                Key={"pk": {"S": "BENCH"}, "sk": {"S": "COUNTER"}},
                UpdateExpression="SET n = n + :one",
                ConditionExpression="n < :cap",
                ExpressionAttributeValues={":one": {"N": "1"}, ":cap": {"N": "1000000"}},
            ),
        )
        costs: list[tuple[str, Cost, float]] = [("send (warm)", steady, sends)]
        costs.append(("quote", _measure(meter, lambda: _quote("bench-send")), 1))
        create("bench-grant")
        paid = _paid_session(meter, "bench-grant")
        costs.append(
            ("purchase grant (checkout.session.completed)", _measure(meter, lambda: _grant(paid)), 1)
        )
        _ready_to_recharge(meter, "bench-recharge")
        costs.append(
            (
                "recharge (a short send: charge, grant, send)",
                _measure(meter, lambda: _send("bench-recharge")),
                1,
            )
        )
        _due_account("bench-refresh")
        costs.append(("refresh of one account", _measure(meter, lambda: _refresh("bench-refresh")), 1))
    base = f"{bare.describe()}: {bare.write_units:g} WCU"
    print(f"bare conditional UpdateItem: {base} (moto reports {bare.moto_units:g})")
    for what, cost, times in costs:
        requests = sum(cost.requests.values()) / times
        line = (
            f"{requests:g} requests ({_per(cost, times)}), {cost.reads / times:g} reads = "
            f"{cost.read_units / times:g} RCU, {cost.writes / times:g} writes = {cost.write_units / times:g} WCU"
        )
        print(f"{what}: {line} (moto reports {cost.moto_units / times:g} units)")
        target, met = "—", None
        if what.startswith("send"):
            # the reserve, the hold's dispatch mark before Twilio is asked (issue 14: a replay after a crash
            # knows "never sent" from "maybe sent"), the post
            target = "3 writes, 0 reads"
            met = cost.writes / times == 3 and cost.reads == 0
            if not met:
                section.notes.append(
                    f"send: {cost.writes / times:g} writes and {cost.reads / times:g} reads, target 3 and 0."
                )
        section.rows.append(
            Row(
                f"DynamoDB: {what}",
                line,
                base,
                f"{cost.write_units / times / max(bare.write_units, 1):g}× the bare write's WCU",
                target,
                met,
            )
        )
    return section


def _per(cost: Cost, times: float) -> str:
    return ", ".join(f"{n / times:g} {name}" for name, n in sorted(cost.requests.items()))
