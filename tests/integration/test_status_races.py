"""A `failed` status racing the send's own post, in every order it can arrive in, on both ledgers: the send's
post (or, when it cannot land, the post it queues for the status worker) and the failed status end the message
with its credits back exactly once, whichever comes first and however often each is delivered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from smscredits.adapters.dynamo.ledger import DynamoLedger
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.adapters.ledger_operations import LedgerOperations
from smscredits.adapters.memory_ledger import InMemoryLedger
from smscredits.domain import ledger as L
from smscredits.domain.audit import check_account
from smscredits.domain.errors import Busy
from smscredits.domain.idempotency import IdempotencyKey, message_id_for
from smscredits.services.ports import SendOutcome, Statements
from smscredits.services.sending import SendCommand, send_message
from smscredits.services.settlement import settle_status
from tests.conftest import TABLE, Clock, new_account
from tests.ledgers import ACCT

SID = "SM" + "1" * 32
KEY = "order-1"
AU = "+61491570110"


class PostsCannotLand:
    """The ledger, except that the send's own post (the one without a callback's SID) meets a balance too busy to
    write while `busy` is set, as it does when many sends race for one account."""

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger
        self.busy = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def post(self, hold: Any, provider: Mapping[str, Any] | None = None, *, sid: str | None = None) -> Any:
        if self.busy and sid is None:
            raise Busy("The account's balance is too busy right now; nothing was changed.", {})
        return self._ledger.post(hold, provider, sid=sid)


class Twilio:
    """Accepts the message; `on_accept` runs after Twilio took it and before its answer reaches the send (a
    callback that overtakes the answer)."""

    def __init__(self) -> None:
        self.on_accept: Callable[[], None] = lambda: None
        self.sent = 0

    def send(self, *, to: str, body: str, status_callback: str) -> SendOutcome:
        self.sent += 1
        self.on_accept()
        return SendOutcome("accepted", sid=SID, status="queued", num_segments=1)


class Queue:
    def __init__(self) -> None:
        self.statuses: list[Mapping[str, Any]] = []

    def send(self, status: Mapping[str, Any]) -> None:
        self.statuses.append(dict(status))


@pytest.fixture(params=["memory", "dynamo"])
def ledgers(request: pytest.FixtureRequest, clock: Clock) -> tuple[Any, Callable[[], tuple[Any, list[str]]]]:
    """The ledger and a function that answers the account as stored with every problem the ledger check finds."""
    ledger: LedgerOperations
    statements: Statements
    if request.param == "memory":
        memory = InMemoryLedger(clock=clock)
        ledger, statements = memory, memory
    else:
        client = request.getfixturevalue("dynamodb")
        ledger, statements = (
            DynamoLedger(TABLE, client=client, clock=clock),
            DynamoStatements(TABLE, client=client),
        )
    ledger.create_account(new_account(ACCT), reference={"actor": "test"})

    def audited() -> tuple[Any, list[str]]:
        account, entries, holds = statements.partition(ACCT)
        return account, check_account(account, entries, holds)

    return ledger, audited


def apply(ledger: Any, status: str, error_code: str | None = None) -> str:
    """The status worker applying one queued status for the message (the callback's, or the deferred post)."""
    message_id = message_id_for(ACCT, IdempotencyKey.require(KEY))
    return settle_status(
        ledger, account_id=ACCT, message_id=message_id, status=status, sid=SID, error_code=error_code
    )


def failed(ledger: Any) -> str:
    return apply(ledger, "failed", "30006")


# When the failed status lands, relative to the send's post (which lands, or cannot and is queued).
ORDERS = [
    ("post lands", "failed before the post"),
    ("post lands", "failed after the post"),
    ("post deferred", "failed before the post"),
    ("post deferred", "failed before the deferred post"),
    ("post deferred", "failed after the deferred post"),
]


@pytest.mark.parametrize(("post", "when"), ORDERS, ids=[f"{p}-{w}".replace(" ", "_") for p, w in ORDERS])
def test_a_failed_message_ends_with_its_credits_back_once_whatever_the_order(
    ledgers: tuple[Any, Callable[[], tuple[Any, list[str]]]], post: str, when: str
) -> None:
    ledger, audited = ledgers
    racing = PostsCannotLand(ledger)
    racing.busy = post == "post deferred"
    twilio, queue = Twilio(), Queue()
    outcomes: list[str] = []
    if when == "failed before the post":
        twilio.on_accept = lambda: outcomes.append(failed(ledger))
    command = SendCommand(ACCT, IdempotencyKey.require(KEY), AU, "Hello", "https://api.example")
    answer = send_message(racing, twilio, None, command, queue)
    racing.busy = False
    assert twilio.sent == 1
    if when == "failed after the post" or when == "failed before the deferred post":
        outcomes.append(failed(ledger))
    deferred = [apply(ledger, str(s["status"])) for s in queue.statuses]  # the worker runs the queued post
    if when == "failed after the deferred post":
        outcomes.append(failed(ledger))
    assert outcomes and outcomes[0] in ("voided", "refunded")
    # Every status comes again (SQS delivers at least once, Twilio's callback and the deferred post both): no
    # second movement.
    assert failed(ledger) == "unchanged"
    assert [apply(ledger, str(s["status"])) for s in queue.statuses] == ["unchanged"] * len(deferred)

    account, problems = audited()
    assert problems == []
    assert (account.pools[L.INCLUDED], account.held) == (50, 0)  # charged nothing, returned once
    hold = ledger.get_hold(ACCT, message_id_for(ACCT, IdempotencyKey.require(KEY)))
    assert hold.status in ("voided", "refunded") and hold.provider["provider_status"] == "failed"
    assert answer.status in ("pending", "sent", "failed")
