"""A 10,000-message batch on one account against the DynamoDB stand-in with its AWS fidelity (latency,
TransactionConflict, partition throughput), beside single sends of the same account at the same concurrency:
balance-item writes for the whole batch, write requests per message, dispatch messages/s with pacing off
(an instant stand-in Twilio), the completing settlement's lag. `python -m bench.batches [--messages N]`."""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from botocore.config import Config

from bench.common import CORE_LAYER, Row, Section, announce
from bench.contention import dynamo_server
from bench.send_patterns import TABLE

CLIENTS = 32
MESSAGES, QUICK_MESSAGES = 10_000, 1_000
SINGLE_SENDS, QUICK_SINGLE_SENDS = 320, 64  # a sample: today's sends at 32 clients run near 4/s
ACCT = "bench-batch"
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
READS = {"GetItem", "Query", "TransactGetItems"}


class Requests:
    """DynamoDB requests per operation across every client, and transactions that write the balance item."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.balance_writes = 0

    def hook(self, model: Any, params: Any = None, **_: Any) -> None:
        with self.lock:
            self.counts[model.name] += 1
            if model.name == "TransactWriteItems" and any(
                (item.get("Update") or {}).get("Key", {}).get("sk", {}).get("S") == "ACCOUNT"
                for item in (params or {}).get("TransactItems", [])
            ):
                self.balance_writes += 1

    def snapshot(self) -> tuple[Counter[str], int]:
        with self.lock:
            return Counter(self.counts), self.balance_writes

    def client(self, endpoint: str) -> Any:
        from local.moto_dynamo import moto_client

        client = moto_client(
            endpoint, Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=60)
        )
        client.meta.events.register("provide-client-params.dynamodb.*", self._params)
        return client

    def _params(self, model: Any, params: Any, **_: Any) -> None:
        self.hook(model, params)


class InstantTwilio:
    """Accepts every message at once (pacing off: what is measured is ours, not Twilio's)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[str, str]] = []  # (sid, callback url)

    def send(self, *, to: str, body: str, status_callback: str) -> Any:
        from smscredits.services.ports import SendOutcome

        sid = "SM" + uuid.uuid4().hex
        with self.lock:
            self.sent.append((sid, status_callback))
        return SendOutcome("accepted", sid=sid, status="queued")


class TimedQueue:
    """The batch queue with SQS's DelaySeconds: a job can be taken once its delay has passed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: list[tuple[float, dict[str, Any]]] = []

    def send(self, jobs: Any) -> None:
        with self.lock:
            self.jobs += [(time.monotonic() + delay, dict(job)) for job, delay in jobs]

    def take(self, kind: str) -> dict[str, Any] | None:
        with self.lock:
            now = time.monotonic()
            for position, (due, job) in enumerate(self.jobs):
                if job["kind"] == kind and due <= now:
                    del self.jobs[position]
                    return job
            return None


def threads(count: int, work: Callable[[int], None]) -> float:
    """Run `work(i)` on `count` threads at once; the seconds it took."""
    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started


def patiently[T](action: Callable[[], T]) -> T:
    from botocore.exceptions import ReadTimeoutError

    from smscredits.domain.errors import UpstreamUnavailable

    for _ in range(200):
        try:
            return action()
        except (
            UpstreamUnavailable,
            ReadTimeoutError,
        ):  # the caller (or SQS) tries again: every job is idempotent
            continue
    raise RuntimeError("never landed")


def new_account() -> Any:
    from datetime import UTC, date, datetime

    from smscredits.domain.account import Account
    from smscredits.domain.catalog import PLANS
    from smscredits.domain.periods import period_containing, period_start_at

    now, anchor = datetime.now(UTC), date(2026, 1, 5)
    start, following = period_containing(anchor, now.date())
    return Account(
        account_id=ACCT,
        plan="starter",
        credit_model="segment",
        home_region="AU",
        billing_anchor=anchor,
        created_at=now,
        period_start=start,
        next_refresh_at=period_start_at(following),
        allowance=PLANS["starter"],
        pools={},
        held=0,
        version=0,
    )


def measure(endpoint: str, messages: int, singles: int) -> dict[str, float]:
    from smscredits.adapters.dynamo.batches import DynamoBatchMessages
    from smscredits.adapters.dynamo.ledger import DynamoLedger
    from smscredits.adapters.dynamo.reader import DynamoStatements
    from smscredits.domain import batches as B
    from smscredits.domain.audit import check_account
    from smscredits.domain.idempotency import IdempotencyKey
    from smscredits.services import batches, sending

    counted = Requests()
    ledger = DynamoLedger(TABLE, client=counted.client(endpoint))
    ledger.create_account(new_account(), reference={})
    ledger.adjust(ACCT, "purchased:AU", messages + singles + 10, op_id="bench", actor="bench", reason="bench")
    base, balance_before = counted.snapshot()  # the account's creation and its credits are not the batch's
    pacing = batches.Pacing(rate=0, settle_every=60, grace=3600)  # the deployed cadence
    queue = TimedQueue()
    twilio = InstantTwilio()
    entries = tuple(
        B.Entry(f"+61412{i:06d}", "Thanks for visiting! Reply STOP to opt out.") for i in range(messages)
    )
    command = batches.CreateCommand(ACCT, IdempotencyKey("bench"), entries, "https://bench.invalid")
    started = time.perf_counter()
    store = DynamoBatchMessages(TABLE, client=counted.client(endpoint))
    created = batches.create(ledger, store, queue, None, command, pacing)
    create_seconds = time.perf_counter() - started

    def run_job(job: dict[str, Any], ledger: Any, records: Any) -> None:
        patiently(
            lambda: batches.handle(
                job,
                ledger=ledger,
                messages=records,
                queue=queue,
                sender=twilio,
                base_url="https://bench.invalid",
                pacing=pacing,
            )
        )

    def worker(_: int) -> None:
        mine = DynamoLedger(TABLE, client=counted.client(endpoint))
        records = DynamoBatchMessages(TABLE, client=counted.client(endpoint))
        while (job := queue.take("slice")) is not None:
            run_job(job, mine, records)

    # The batch's settle job, as the worker runs it when its delay has passed (one settlement per cadence).
    stop = threading.Event()

    def settler() -> None:
        mine = DynamoLedger(TABLE, client=counted.client(endpoint))
        records = DynamoBatchMessages(TABLE, client=counted.client(endpoint))
        while not stop.is_set():
            job = queue.take("settle")
            if job is None:
                stop.wait(0.5)
            else:
                run_job(job, mine, records)

    settling = threading.Thread(target=settler)
    settling.start()
    dispatch_seconds = threads(CLIENTS, worker)
    sent = list(twilio.sent)

    def callbacks(part: int) -> None:
        mine = DynamoLedger(TABLE, client=counted.client(endpoint))
        records = DynamoBatchMessages(TABLE, client=counted.client(endpoint))
        for n, (sid, url) in enumerate(sent[part::CLIENTS]):
            index = int(url.rsplit("index=", 1)[1])
            status = "failed" if (n + part) % 10 == 0 else "delivered"
            patiently(
                lambda index=index, status=status, sid=sid: batches.apply_callback(  # type: ignore[misc]
                    mine,
                    records,
                    account_id=ACCT,
                    batch_id=created["batch_id"],
                    index=index,
                    status=status,
                    sid=sid,
                )
            )

    callback_seconds = threads(CLIENTS, callbacks)
    stop.set()
    settling.join()
    started = time.perf_counter()
    batch, ended = patiently(lambda: batches.settle(ledger, store, ACCT, created["batch_id"], pacing))
    settle_seconds = time.perf_counter() - started
    counts, balance_writes = counted.snapshot()
    balance_writes -= balance_before
    writes = sum(n for name, n in (counts - base).items() if name in WRITES)
    statements = DynamoStatements(TABLE, client=counted.client(endpoint))
    exact = (
        ended
        and batch.posted + batch.returned == batch.credits_held
        and not check_account(*statements.partition(ACCT))
    )

    def single_sends(client: int) -> None:
        mine = DynamoLedger(TABLE, client=counted.client(endpoint))
        for n in range(singles // CLIENTS):
            key = IdempotencyKey(f"single-{client}-{n}")
            command = sending.SendCommand(
                ACCT, key, f"+61413{client:03d}{n:03d}", "Thanks!", "https://bench.invalid"
            )
            patiently(lambda command=command: sending.send_message(mine, twilio, None, command))  # type: ignore[misc]

    single_seconds = threads(CLIENTS, single_sends)
    return {
        "messages": messages,
        "accepted": created["accepted"],
        "create_s": create_seconds,
        "dispatch_per_s": len(sent) / dispatch_seconds,
        "callback_s": callback_seconds,
        "settle_s": settle_seconds,
        "settlements": batch.settlements,
        "reads_per_message": sum(n for name, n in (counts - base).items() if name in READS) / messages,
        "balance_writes": balance_writes,
        "writes_per_message": writes / messages,
        "requests_per_message": sum((counts - base).values()) / messages,
        "single_per_s": (singles // CLIENTS * CLIENTS) / single_seconds,
        "exact": float(exact),
    }


def run(quick: bool, messages: int | None = None) -> Section:
    announce("a batch on one account beside single sends (DynamoDB stand-in with AWS fidelity)")
    size = messages or (QUICK_MESSAGES if quick else MESSAGES)
    singles = QUICK_SINGLE_SENDS if quick else SINGLE_SENDS
    with dynamo_server() as (endpoint, _):
        m = measure(endpoint, size, singles)
    print(m, flush=True)
    section = Section("A batch on one account", method(size, singles))
    ratio = m["dispatch_per_s"] / m["single_per_s"]
    section.rows += [
        Row(
            f"batch of {size:,}: balance-item writes",
            f"{m['balance_writes']:.0f} ({m['settlements']:.0f} settlements)",
            f"{2 * size:,} as single sends",
            "reservation + settlements",
            "≤ 20",
            m["balance_writes"] <= 20,
        ),
        Row(
            f"batch of {size:,}: write requests per message",
            f"{m['writes_per_message']:.2f}",
            "2 transactions per single send",
            f"{m['requests_per_message']:.2f} requests of any kind ({m['reads_per_message']:.2f} reads)",
            "≤ 2",
            m["writes_per_message"] <= 2,
        ),
        Row(
            f"batch of {size:,}: dispatch, pacing off, {CLIENTS} workers",
            f"{m['dispatch_per_s']:.0f} messages/s",
            f"single sends, {CLIENTS} clients: {m['single_per_s']:.1f}/s",
            f"{ratio:.1f}×",
            "≥ 5×",
            ratio >= 5,
        ),
        Row(
            f"batch of {size:,}: completing settlement",
            f"{m['settle_s']:.2f} s after the last callback",
            f"callbacks took {m['callback_s']:.0f} s",
            f"create (reserve + records) {m['create_s']:.1f} s",
            "—",
            None,
        ),
    ]
    if not m["exact"]:
        section.notes.append("the batch did not settle exactly (see the bench's output)")
    for row in section.rows:
        if row.met is False:
            section.notes.append(f"{row.what}: {row.measured} against {row.target}")
    return section


def method(size: int, singles: int) -> str:
    return (
        f"The moto server with local.dynamo_fidelity on (AWS defaults) in its own process. One account; one batch "
        f"of {size:,} AU messages created through services/batches.create; its slices run by {CLIENTS} worker "
        "threads (each its own ledger and client, as Lambda instances) with an instant stand-in Twilio and pacing "
        f"off, and the batch's settle job run by one more thread when its delay (the 60 s cadence) has passed; one "
        f"status callback per message through services/batches.apply_callback ({CLIENTS} threads, one in ten "
        "failed), then the completing settlement. Every DynamoDB request is counted by a botocore hook; a "
        f"balance-item write is a TransactWriteItems naming the ACCOUNT item. Then {singles} single sends "
        f"(services/sending) from {CLIENTS} threads on the same account, the same stand-in Twilio: a sample, "
        "since at today's ~4 sends/s on one account 10,000 would take most of an hour."
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batches", description=__doc__)
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for path in (str(CORE_LAYER),):
        if path not in sys.path:
            sys.path.append(path)
    section = run(args.quick, args.messages)
    for row in section.rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
