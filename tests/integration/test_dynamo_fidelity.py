"""The DynamoDB stand-in's concurrency behaviour (local.dynamo_fidelity), driven by threads through a moto
server as Lambda environments would drive DynamoDB, and through the in-process mock for the same errors."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from local import dynamo_fidelity as fidelity
from local.dynamo_fidelity import Fidelity, Latency
from local.moto_dynamo import create_tables, moto_client
from tests.conftest import TABLE

Switch = Callable[[Fidelity], None]
WINDOW_MS = (
    600.0  # a transaction's latency in the timing tests: long enough to act inside it on a busy machine
)
SLOW_TRANSACTIONS = Fidelity(
    latency={fidelity.TRANSACT_WRITE: Latency(WINDOW_MS, WINDOW_MS)}, conflicts=True, partition_wcu=1000
)


def client_for(url: str) -> Any:
    return moto_client(url, Config(retries={"max_attempts": 1}, max_pool_connections=4))


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def put(pk: str, sk: str, **attributes: Any) -> dict[str, Any]:
    return {"Put": {"TableName": TABLE, "Item": {**key(pk, sk), **attributes}}}


def set_n(pk: str, sk: str, n: int) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": TABLE,
            "Key": key(pk, sk),
            "UpdateExpression": "SET n = :n",
            "ExpressionAttributeValues": {":n": {"N": str(n)}},
        }
    }


def stored(client: Any, pk: str, sk: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = client.get_item(TableName=TABLE, Key=key(pk, sk), ConsistentRead=True).get(
        "Item"
    )
    return item


class InFlight:
    """A TransactWriteItems running in a thread; `hold()` returns once DynamoDB holds its items."""

    def __init__(self, client: Any, items: list[dict[str, Any]]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(client, items))

    def _run(self, client: Any, items: list[dict[str, Any]]) -> None:
        try:
            client.transact_write_items(TransactItems=items)
        except BaseException as error:  # surfaced by finish()
            self.error = error

    def hold(self) -> InFlight:
        self.thread.start()
        deadline = time.monotonic() + 5
        while not fidelity.holding():
            assert time.monotonic() < deadline, "the transaction never reached the stand-in"
            time.sleep(0.002)
        return self

    def finish(self) -> None:
        self.thread.join(timeout=30)
        if self.error is not None:
            raise self.error


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call()
    response = dict(raised.value.response)
    assert response.pop("ResponseMetadata")["HTTPStatusCode"] == 400
    return response


CONFLICT = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}


# ---- TransactionConflict ----------------------------------------------------------------------------


def test_a_transaction_over_a_held_item_is_cancelled_and_writes_nothing(
    endpoint: str, dynamo_fidelity: Switch
):
    dynamo_fidelity(SLOW_TRANSACTIONS)
    first, second = client_for(endpoint), client_for(endpoint)
    running = InFlight(first, [set_n("T1", "BALANCE", 1), put("T1", "HOLD#a")]).hold()

    error = error_of(
        lambda: second.transact_write_items(TransactItems=[put("T1", "HOLD#b"), set_n("T1", "BALANCE", 2)])
    )
    running.finish()

    assert error["Error"] == {
        "Code": "TransactionCanceledException",
        "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
        "[None, TransactionConflict]",
    }
    assert error["CancellationReasons"] == [{"Code": "None"}, CONFLICT]
    assert stored(first, "T1", "HOLD#b") is None  # the cancelled transaction wrote nothing
    assert stored(first, "T1", "BALANCE") == {**key("T1", "BALANCE"), "n": {"N": "1"}}
    assert stored(first, "T1", "HOLD#a") is not None


def test_requests_and_their_conflicts_are_counted_by_the_callers_app_id(
    endpoint: str, dynamo_fidelity: Switch
):
    dynamo_fidelity(SLOW_TRANSACTIONS)
    named = moto_client(endpoint, Config(retries={"max_attempts": 1}, user_agent_appid="SendFunction"))
    before = fidelity.counters()
    running = InFlight(client_for(endpoint), [set_n("T9", "BALANCE", 1)]).hold()
    error_of(lambda: named.update_item(**set_n("T9", "BALANCE", 3)["Update"]))
    error_of(lambda: named.transact_write_items(TransactItems=[set_n("T9", "BALANCE", 2)]))
    running.finish()
    named.get_item(TableName=TABLE, Key=key("T9", "BALANCE"))
    condition = {"ConditionExpression": "n = :n"}
    error_of(lambda: named.update_item(**{**set_n("T9", "BALANCE", 4)["Update"], **condition}))
    after = fidelity.counters()

    def grew(caller: str, name: str) -> int:
        return after.get(caller, {}).get(name, 0) - before.get(caller, {}).get(name, 0)

    assert [grew("SendFunction", name) for name in ("transact_write_items", "update_item", "get_item")] == [
        1,
        2,
        1,
    ]
    assert grew("SendFunction", "!conflict") == 2  # the cancelled transaction and the refused UpdateItem
    assert grew("SendFunction", "!condition") == 1
    assert grew("other", "transact_write_items") == 1 and grew("other", "!conflict") == 0


@pytest.mark.parametrize("operation", ["put_item", "update_item", "delete_item"])
def test_a_single_write_to_a_held_item_gets_transaction_conflict_exception(
    endpoint: str, dynamo_fidelity: Switch, operation: str
):
    dynamo_fidelity(SLOW_TRANSACTIONS)
    client = client_for(endpoint)
    client.put_item(TableName=TABLE, Item={**key("T2", operation), "n": {"N": "0"}})
    running = InFlight(client_for(endpoint), [set_n("T2", operation, 1)]).hold()
    write: dict[str, Callable[[], Any]] = {
        "put_item": lambda: client.put_item(TableName=TABLE, Item={**key("T2", operation), "n": {"N": "9"}}),
        "update_item": lambda: client.update_item(
            TableName=TABLE,
            Key=key("T2", operation),
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "9"}},
        ),
        "delete_item": lambda: client.delete_item(TableName=TABLE, Key=key("T2", operation)),
    }

    error = error_of(write[operation])
    running.finish()

    assert error == {
        "Error": {"Code": "TransactionConflictException", "Message": CONFLICT["Message"]},
        "message": CONFLICT["Message"],
    }
    assert stored(client, "T2", operation) == {**key("T2", operation), "n": {"N": "1"}}  # the transaction's
    write[operation]()  # once the transaction is over the same write lands
    assert stored(client, "T2", operation) != {**key("T2", operation), "n": {"N": "1"}}


def test_reads_see_committed_state_and_are_not_refused_while_a_transaction_holds_the_item(
    endpoint: str, dynamo_fidelity: Switch
):
    dynamo_fidelity(SLOW_TRANSACTIONS)
    client = client_for(endpoint)
    client.put_item(TableName=TABLE, Item={**key("T3", "BALANCE"), "n": {"N": "0"}})
    running = InFlight(client_for(endpoint), [set_n("T3", "BALANCE", 1)]).hold()

    began = time.monotonic()
    during = stored(client, "T3", "BALANCE")
    queried = client.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "T3"}},
        ConsistentRead=True,
    )["Items"]
    waited = time.monotonic() - began
    still_holding = fidelity.holding()
    running.finish()

    assert still_holding, "the reads must have happened inside the transaction's window"
    assert waited < WINDOW_MS / 1000
    assert during == queried[0] == {**key("T3", "BALANCE"), "n": {"N": "0"}}
    assert stored(client, "T3", "BALANCE") == {**key("T3", "BALANCE"), "n": {"N": "1"}}


def test_transact_get_items_over_a_held_item_is_cancelled(endpoint: str, dynamo_fidelity: Switch):
    dynamo_fidelity(SLOW_TRANSACTIONS)
    client = client_for(endpoint)
    running = InFlight(client_for(endpoint), [set_n("T4", "BALANCE", 1)]).hold()

    error = error_of(
        lambda: client.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": TABLE, "Key": key("T4", "OTHER")}},
                {"Get": {"TableName": TABLE, "Key": key("T4", "BALANCE")}},
            ]
        )
    )
    running.finish()

    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert error["CancellationReasons"] == [{"Code": "None"}, CONFLICT]


def test_concurrent_version_pinned_writers_collide_and_every_landed_write_counts(
    endpoint: str, dynamo_fidelity: Switch
):
    """16 writers, each adding 1 to one counter 5 times with today's pattern: the balance pinned to its
    version plus a ledger entry keyed by the new version, retried from a fresh read when cancelled."""
    client = client_for(endpoint)
    client.put_item(TableName=TABLE, Item={**key("T5", "BALANCE"), "n": {"N": "0"}})
    reasons: list[str] = []
    lock = threading.Lock()

    def writer(_: int) -> None:
        own = client_for(endpoint)
        for _ in range(5):
            while True:
                version = int(stored(own, "T5", "BALANCE")["n"]["N"])  # type: ignore[index]
                try:
                    own.transact_write_items(
                        TransactItems=[
                            {
                                "Update": {
                                    "TableName": TABLE,
                                    "Key": key("T5", "BALANCE"),
                                    "UpdateExpression": "SET n = :next",
                                    "ConditionExpression": "n = :seen",
                                    "ExpressionAttributeValues": {
                                        ":next": {"N": str(version + 1)},
                                        ":seen": {"N": str(version)},
                                    },
                                }
                            },
                            put("T5", f"LEDGER#{version + 1:06d}"),
                        ]
                    )
                    break
                except ClientError as error:
                    with lock:
                        reasons.extend(
                            r["Code"] for r in error.response["CancellationReasons"] if r["Code"] != "None"
                        )
                    time.sleep(0.005)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    ledger = client.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :l)",
        ExpressionAttributeValues={":pk": {"S": "T5"}, ":l": {"S": "LEDGER#"}},
    )["Items"]
    assert stored(client, "T5", "BALANCE")["n"] == {"N": "80"}  # type: ignore[index]
    assert [item["sk"]["S"] for item in ledger] == [f"LEDGER#{v:06d}" for v in range(1, 81)]
    assert "TransactionConflict" in reasons  # they did overlap, as they would on DynamoDB
    assert set(reasons) <= {"TransactionConflict", "ConditionalCheckFailed"}


# ---- throughput -------------------------------------------------------------------------------------


def test_single_writes_beyond_the_partition_limit_are_throttled(endpoint: str, dynamo_fidelity: Switch):
    dynamo_fidelity(Fidelity(partition_wcu=10))
    client = client_for(endpoint)
    big = {"S": "x" * 4500}  # 4.5 KB: 5 write units, so 12 of them would need 6 s of refills
    outcomes: dict[int, str] = {}

    def write(index: int) -> None:
        try:
            client_for(endpoint).put_item(TableName=TABLE, Item={**key("T6", f"ITEM#{index}"), "blob": big})
            outcomes[index] = "written"
        except ClientError as error:
            outcomes[index] = error.response["Error"]["Code"]
            assert error.response["Error"]["Message"] == fidelity.THROTTLE_MESSAGE
            assert error.response["throttlingReasons"] == [
                {
                    "reason": "TableWriteKeyRangeThroughputExceeded",
                    "resource": "arn:aws:dynamodb:us-east-1:123456789012:table/CreditsTable",
                }
            ]

    began = time.monotonic()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - began

    written = [i for i, outcome in outcomes.items() if outcome == "written"]
    throttled = [i for i, outcome in outcomes.items() if outcome == "ThrottlingException"]
    assert len(written) + len(throttled) == 12
    assert 5 * len(written) <= 10 + 10 * elapsed  # the bucket: one second's worth, refilled at 10 a second
    assert throttled
    assert all(stored(client, "T6", f"ITEM#{i}") is None for i in throttled)
    client.put_item(TableName=TABLE, Item={**key("T6-other", "ITEM"), "blob": big})  # another partition


def test_a_transaction_costs_two_units_per_kb_per_item(endpoint: str, dynamo_fidelity: Switch):
    """A bucket never holds more than one second's worth, so these outcomes do not depend on timing."""
    dynamo_fidelity(Fidelity(partition_wcu=10))
    client = client_for(endpoint)
    big = {"S": "x" * 1500}  # 1.5 KB: 2 units alone, 4 in a transaction

    error = error_of(
        lambda: client.transact_write_items(TransactItems=[put("T7", f"B#{i}", blob=big) for i in range(3)])
    )
    client.transact_write_items(TransactItems=[put("T7", f"A#{i}") for i in range(3)])  # 3 × 2 = 6 units
    client.put_item(TableName=TABLE, Item={**key("T7", "SINGLE"), "blob": big})  # 2 of the 4 or more left

    throttled = {"Code": "ThrottlingError", "Message": fidelity.THROTTLE_MESSAGE}
    assert error["CancellationReasons"] == [throttled] * 3  # 12 units: more than the partition ever banks
    assert all(stored(client, "T7", f"B#{i}") is None for i in range(3))
    assert all(stored(client, "T7", f"A#{i}") is not None for i in range(3))


# ---- latency ----------------------------------------------------------------------------------------


def test_requests_take_the_configured_latency(endpoint: str, dynamo_fidelity: Switch):
    dynamo_fidelity(
        Fidelity(latency={fidelity.WRITE: Latency(40, 80), fidelity.TRANSACT_WRITE: Latency(100, 100)})
    )
    client = client_for(endpoint)
    writes = []
    for index in range(30):
        began = time.monotonic()
        client.put_item(TableName=TABLE, Item=key("T8", f"ITEM#{index}"))
        writes.append((time.monotonic() - began) * 1000)
    began = time.monotonic()
    client.transact_write_items(TransactItems=[put("T8", "TX")])
    transaction = (time.monotonic() - began) * 1000

    assert 35 <= statistics.median(writes) <= 150  # 40 ms added to moto's own few
    assert transaction >= 100


# ---- moto's answers otherwise -----------------------------------------------------------------------


def script(client: Any, pk: str) -> list[Any]:
    """A run of ordinary requests, each answer recorded (errors as their parsed response)."""
    answers: list[Any] = []

    def record(call: Callable[[], Any]) -> None:
        try:
            answer = dict(call())
        except ClientError as error:
            answer = dict(error.response)
        answer.pop("ResponseMetadata", None)
        answers.append(answer)

    record(
        lambda: client.put_item(
            TableName=TABLE, Item={**key(pk, "BALANCE"), "n": {"N": "5"}, "version": {"N": "1"}}
        )
    )
    record(
        lambda: client.update_item(
            TableName=TABLE,
            Key=key(pk, "BALANCE"),
            UpdateExpression="SET n = n - :c",
            ConditionExpression="n >= :c",
            ExpressionAttributeValues={":c": {"N": "9"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    )
    record(
        lambda: client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key(pk, "BALANCE"),
                        "UpdateExpression": "SET version = :next",
                        "ConditionExpression": "version = :seen",
                        "ExpressionAttributeValues": {":next": {"N": "3"}, ":seen": {"N": "2"}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                put(pk, "LEDGER#1"),
            ]
        )
    )
    record(lambda: client.transact_write_items(TransactItems=[set_n(pk, "BALANCE", 4), put(pk, "LEDGER#1")]))
    record(lambda: client.get_item(TableName=TABLE, Key=key(pk, "BALANCE"), ConsistentRead=True))
    record(
        lambda: client.query(
            TableName=TABLE, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
        )
    )
    record(
        lambda: client.transact_get_items(
            TransactItems=[{"Get": {"TableName": TABLE, "Key": key(pk, "LEDGER#1")}}]
        )
    )
    record(lambda: client.delete_item(TableName=TABLE, Key=key(pk, "LEDGER#1"), ReturnValues="ALL_OLD"))
    return [_renamed(answer, pk) for answer in answers]


def _renamed(value: Any, pk: str) -> Any:
    if isinstance(value, dict):
        return {k: _renamed(v, pk) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, pk) for v in value]
    return "PK" if value == pk else value


def test_answers_are_moto_s_when_nothing_collides(endpoint: str, dynamo_fidelity: Switch):
    client = client_for(endpoint)
    dynamo_fidelity(fidelity.OFF)
    plain = script(client, "T9-off")
    dynamo_fidelity(
        Fidelity(
            latency={kind: Latency(2, 4) for kind in fidelity.CLASSES},
            conflicts=True,
            partition_wcu=1000,
            partition_rcu=3000,
        )
    )
    with_fidelity = script(client, "T9-on")

    assert with_fidelity == plain
    assert plain[1]["Error"]["Code"] == "ConditionalCheckFailedException"
    assert plain[2]["CancellationReasons"][0]["Code"] == "ConditionalCheckFailed"


def test_the_in_process_mock_answers_the_same_errors_as_the_server(endpoint: str, dynamo_fidelity: Switch):
    def errors(client: Any, pk: str) -> list[dict[str, Any]]:
        dynamo_fidelity(SLOW_TRANSACTIONS)
        running = InFlight(client, [set_n(pk, "BALANCE", 1)]).hold()
        found = [  # the single write first: a cancelled transaction answers after its own latency
            error_of(lambda: client.put_item(TableName=TABLE, Item=key(pk, "BALANCE"))),
            error_of(
                lambda: client.transact_write_items(TransactItems=[put(pk, "HOLD"), set_n(pk, "BALANCE", 2)])
            ),
        ]
        running.finish()
        dynamo_fidelity(Fidelity(partition_wcu=1))  # a small item fits; 2 units never do, whatever the timing
        client.put_item(TableName=TABLE, Item=key(pk, "A"))
        big = {"S": "x" * 1500}
        found.append(error_of(lambda: client.put_item(TableName=TABLE, Item={**key(pk, "B"), "blob": big})))
        found.append(error_of(lambda: client.transact_write_items(TransactItems=[put(pk, "C")])))
        return found

    from_server = errors(client_for(endpoint), "T10")
    with mock_aws():  # moto's backends are one per process: the server's tables are gone while it runs
        in_process = boto3.client(
            "dynamodb", region_name="us-east-1", config=Config(retries={"max_attempts": 1})
        )
        create_tables(in_process)
        from_mock = errors(in_process, "T10")
    create_tables(client_for(endpoint))

    assert from_mock == from_server
    assert [e["Error"]["Code"] for e in from_server] == [
        "TransactionConflictException",
        "TransactionCanceledException",
        "ThrottlingException",
        "TransactionCanceledException",
    ]
