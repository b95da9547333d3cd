"""Single sends on one account through the service (local mode: the gateway's worker pool, the DynamoDB
stand-in with its AWS fidelity, the Twilio stand-in) from 1, 8, 32 and 64 concurrent clients, beside one
bare conditional UpdateItem driven the same way against the same DynamoDB stand-in in the same run.
`python -m bench.latency [--quick] [--workers N]`; docs/design/concurrency.md reads the numbers."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import Row, Section, announce, machine, percentile

# Accepted by the Twilio stand-in with no status callback ever (local/twilio_standin.py): the rows measure
# the send path alone, not the status worker's later work on the same hold.
SILENT_AU = "+61491570159"
CREDITS = 1_000_000
CLIENTS = (1, 8, 32, 64)
SENDS_PER_CLIENT = {1: 100, 8: 25, 32: 8, 64: 4}
QUICK_SENDS_PER_CLIENT = {1: 20, 8: 5, 32: 2, 64: 1}
# Environments per function: half of the 64 clients (on 2 cores more interpreters add no CPU, only cold starts).
WORKERS = 32
START_TIMEOUT = 180.0
P50_TARGET = 3.0  # the send's p50 at 1 client against the bare write's
SCALE_TARGET = 2.0  # messages/s at 32 clients against 1 client
FUNCTION = "SendFunction"
WRITES = ("transact_write_items", "put_item", "update_item", "delete_item")

CLOSING = """\
- **Single sends on one account** (docs/design/concurrency.md §7–10). Every send is two transactions on the
  account's balance item (reserve, post), each holding it for the stand-in's transaction latency (p50 25 ms):
  concurrent sends queue on that item and the losers retry, so messages/s falls from a few clients on and the
  requests per send grow. Only one writer per account (pattern D: 7× the 1-client rate at 32 clients in the
  raw measurement) would meet the scaling target; it is not built (the design says what it costs). The p50
  ratio compares a whole send (HTTP, JWT, validation, three DynamoDB writes in sequence, one Twilio call)
  with one UpdateItem: the three writes alone are 7.7× the bare write by AWS's measured latencies, so no
  design that reserves before Twilio and posts after it can meet ≤ 3×."""


@dataclass
class Answer:
    status: int
    credits: int
    seconds: float


@dataclass
class Load:
    """One run: every timed answer and the run's wall time."""

    answers: list[Answer]
    seconds: float
    warm: list[Answer] = field(default_factory=list)  # each client's first call, before the clock

    def per_second(self, status: int | None = None) -> float:
        return sum(1 for a in self.answers if status is None or a.status == status) / self.seconds

    def p(self, fraction: float) -> float:
        return percentile([a.seconds for a in self.answers], fraction) * 1000


@dataclass
class Usage:
    """What the service used during a run: DynamoDB requests by name (the send function's), and CPU."""

    dynamo: Counter[str]
    other_requests: int  # requests of every other caller (the outbox poller, the admin API)
    cpu_service: float  # seconds: local.run (gateway, moto, stand-ins) and every worker
    cpu_clients: float  # seconds: this process (the client threads)
    load: tuple[float, float]  # 1-minute load average before and after

    @property
    def requests(self) -> int:
        return sum(n for name, n in self.dynamo.items() if not name.startswith("!"))

    @property
    def writes(self) -> int:
        return sum(self.dynamo[name] for name in WRITES)


@contextlib.contextmanager
def local_mode(workers: int) -> Iterator[tuple[str, str, int]]:
    """`python -m local.run` on free ports, no timers, the fidelity layer on, `workers` per function;
    yields (gateway URL, moto URL, its pid)."""
    from tests.local_mode import start, stop

    with tempfile.TemporaryDirectory(prefix="bench-local-") as workdir:
        mode = start(
            Path(workdir),
            timeout=START_TIMEOUT,
            LOCAL_SCHEDULES="off",
            LOCAL_DYNAMO_FIDELITY="on",
            LOCAL_FUNCTION_CONCURRENCY=str(workers),
        )
        try:
            urls = json.loads(mode.run_file.read_text())
            yield urls["gateway"], urls["moto"], mode.process.pid
        finally:
            stop(mode)


def _cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Service:
    """The running local mode as the bench reads it: its DynamoDB counters and its processes' CPU."""

    def __init__(self, gateway: str, pid: int) -> None:
        self.gateway = gateway
        self.pid = pid

    def counters(self) -> dict[str, dict[str, int]]:
        answer = requests.get(f"{self.gateway}/__local/dynamo", timeout=30)
        answer.raise_for_status()
        return dict(answer.json()["counters"])

    def pids(self) -> list[int]:
        answer = requests.get(f"{self.gateway}/__local/workers", timeout=30)
        answer.raise_for_status()
        return [self.pid, *(int(w["pid"]) for w in answer.json()["workers"])]

    def snapshot(self) -> tuple[dict[str, dict[str, int]], dict[int, float], float, float]:
        return (
            self.counters(),
            {pid: _cpu(pid) for pid in self.pids()},
            time.process_time(),
            os.getloadavg()[0],
        )

    def usage_since(self, before: tuple[dict[str, dict[str, int]], dict[int, float], float, float]) -> Usage:
        counters, cpu, clients, load = before
        now = self.counters()
        mine = Counter(now.get(FUNCTION, {}))
        mine.subtract(counters.get(FUNCTION, {}))
        other = sum(
            n - counters.get(caller, {}).get(name, 0)
            for caller, names in now.items()
            if caller != FUNCTION
            for name, n in names.items()
            if not name.startswith("!")
        )
        service = sum(_cpu(pid) - cpu.get(pid, 0.0) for pid in self.pids())
        return Usage(+mine, other, service, time.process_time() - clients, (load, os.getloadavg()[0]))


def drive(
    clients: int, each: int, call: Callable[[requests.Session], Answer], service: Service
) -> tuple[Load, Usage]:
    """`clients` threads, each with its own Session: one call to warm up (its worker and connection), then
    `each` calls back to back after a common start; the service's use is read between the two."""
    timed: list[Answer] = []
    warm: list[Answer] = []
    lock = threading.Lock()
    ready, go = threading.Barrier(clients + 1), threading.Barrier(clients + 1)

    def client() -> None:
        mine: list[Answer] = []
        with requests.Session() as session:
            first = call(session)
            ready.wait()
            go.wait()
            for _ in range(each):
                mine.append(call(session))
        with lock:
            warm.append(first)
            timed.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    before = service.snapshot()
    go.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return Load(timed, seconds, warm), service.usage_since(before)


@dataclass
class Level:
    clients: int
    sends: Load
    usage: Usage
    bare: Load
    bare_usage: Usage
    exact: bool
    ledger: list[str]
    spent: int
    charged: int
    unsent: int  # credits held by 429s' holds never handed to Twilio, left for the sweeper

    @property
    def accepted(self) -> int:
        return sum(1 for a in self.sends.answers if a.status == 202)

    def count(self, test: Callable[[int], bool]) -> int:
        return sum(1 for a in self.sends.answers if test(a.status))

    def per_accepted(self, value: float) -> float:
        return value / max(1, self.accepted)


def _account(moto: str, account_id: str) -> tuple[Any, int, list[str]]:
    """The account as stored, the credits of its holds never handed to Twilio, and what the ledger check
    (local/check_ledger.py) finds wrong with it."""
    from local.check_ledger import check
    from local.moto_dynamo import moto_client
    from smscredits.adapters.dynamo.reader import DynamoStatements

    reader = DynamoStatements("CreditsTable", client=moto_client(moto))
    with contextlib.redirect_stdout(None):
        problems = check(reader, [account_id])
    account, _, holds = reader.partition(account_id)
    unsent = sum(h.credits for h in holds if h.status == "pending" and not h.dispatching)
    return account, unsent, problems


def _settled(moto: str, account_id: str, timeout: float = 120.0) -> tuple[Any, int, list[str]]:
    """Once every hold handed to Twilio has ended (a deferred post is finished by the status worker): the
    account, the credits still held by holds never handed over, and the ledger check. Those holds are a 429's
    whose give-back could not land; the sweeper returns them after its grace (schedules are off here)."""
    deadline = time.monotonic() + timeout
    while True:
        account, unsent, problems = _account(moto, account_id)
        if account.held == unsent or time.monotonic() > deadline:
            return account, unsent, problems
        time.sleep(0.5)


def measure(quick: bool, workers: int) -> list[Level]:
    from botocore.config import Config

    from local.moto_dynamo import moto_client
    from local.token import mint

    each = QUICK_SENDS_PER_CLIENT if quick else SENDS_PER_CLIENT
    levels: list[Level] = []
    with local_mode(workers) as (gateway, moto, pid):
        service = Service(gateway, pid)
        admin = {"Authorization": f"Bearer {mint('support', 'admin')}"}
        bare_client = moto_client(
            moto, Config(max_pool_connections=max(CLIENTS), retries={"max_attempts": 1})
        )
        for clients in CLIENTS:
            account_id = f"bench-{clients}-{uuid.uuid4().hex[:6]}"
            _create(gateway, admin, account_id)
            user = {"Authorization": f"Bearer {mint(account_id)}"}

            def send(session: requests.Session, user: dict[str, str] = user) -> Answer:
                began = time.perf_counter()
                answer = session.post(
                    f"{gateway}/v1/messages",
                    json={"to": SILENT_AU, "body": "Your code is 123456"},
                    headers={**user, "Idempotency-Key": uuid.uuid4().hex},
                    timeout=120,
                )
                seconds = time.perf_counter() - began
                credits = int(answer.json().get("credits", 0)) if answer.status_code == 202 else 0
                return Answer(answer.status_code, credits, seconds)

            warm(gateway, clients)
            start = sum(_account(moto, account_id)[0].pools.values())
            sends, usage = drive(clients, each[clients], send, service)
            account, unsent, problems = _settled(moto, account_id)
            spent = start - sum(account.pools.values()) - unsent
            charged = sum(a.credits for a in [*sends.warm, *sends.answers])
            key = {"pk": {"S": f"BENCH#{account_id}"}, "sk": {"S": "COUNTER"}}
            bare_client.put_item(TableName="CreditsTable", Item={**key, "n": {"N": "0"}})

            def bare(_: requests.Session, key: dict[str, Any] = key) -> Answer:
                began = time.perf_counter()
                bare_client.update_item(
                    TableName="CreditsTable",
                    Key=key,
                    UpdateExpression="SET n = n + :one",
                    ConditionExpression="n < :cap",
                    ExpressionAttributeValues={":one": {"N": "1"}, ":cap": {"N": "1000000000"}},
                )
                return Answer(200, 0, time.perf_counter() - began)

            base, base_usage = drive(clients, each[clients], bare, service)
            level = Level(
                clients,
                sends,
                usage,
                base,
                base_usage,
                spent == charged and account.held == unsent and not problems,
                problems,
                spent,
                charged,
                unsent,
            )
            levels.append(level)
            print(line(level), flush=True)
    return levels


def warm(gateway: str, clients: int) -> None:
    """One warm send worker per client (up to the pool's limit) before the clock starts: a pool starts a
    worker only when a request finds all busy, one at a time, so a burst alone would leave cold starts
    inside the timed run."""
    answer = requests.post(
        f"{gateway}/__local/workers", params={"function": FUNCTION, "count": str(clients)}, timeout=1800
    )
    answer.raise_for_status()


def _create(gateway: str, admin: dict[str, str], account_id: str) -> None:
    body = {"account_id": account_id, "plan": "starter", "home_region": "AU", "billing_anchor": "2026-01-05"}
    created = requests.post(f"{gateway}/v1/admin/accounts", json=body, headers=admin, timeout=60)
    assert created.status_code == 201, created.text
    adjusted = requests.post(
        f"{gateway}/v1/admin/accounts/{account_id}/adjustments",
        json={"pool": "purchased:AU", "credits": CREDITS, "reason": "benchmark"},
        headers={**admin, "Idempotency-Key": f"{account_id}-credits"},
        timeout=60,
    )
    assert adjusted.status_code == 200, adjusted.text


def line(level: Level) -> str:
    u, s = level.usage, level.sends
    return (
        f"{level.clients:>2} clients: {s.per_second(202):6.1f} msg/s  p50/p95/p99 {s.p(0.5):7.1f} / {s.p(0.95):7.1f}"
        f" / {s.p(0.99):7.1f} ms  statuses {dict(sorted(Counter(a.status for a in s.answers).items()))}  "
        f"{level.per_accepted(u.requests):.2f} req, {level.per_accepted(u.writes):.2f} writes, "
        f"{level.per_accepted(u.dynamo['!conflict']):.2f} conflicts, {level.per_accepted(u.dynamo['!condition']):.2f} "
        f"stale per 202; throttles {u.dynamo['!throttle']}; by request {dict(sorted(u.dynamo.items()))}; other "
        f"callers {u.other_requests}; CPU service {1000 * u.cpu_service / max(1, len(s.answers)):.0f} ms + clients "
        f"{1000 * u.cpu_clients / max(1, len(s.answers)):.0f} ms per send; load {u.load[0]:.1f}→{u.load[1]:.1f} | "
        f"bare {level.bare.per_second():.0f}/s p50/p95/p99 {level.bare.p(0.5):.1f} / {level.bare.p(0.95):.1f} / "
        f"{level.bare.p(0.99):.1f} ms | credits spent {level.spent} charged {level.charged} (held for the sweeper "
        f"{level.unsent}), ledger "
        f"{level.ledger or 'ok'}: {'exact' if level.exact else 'NOT EXACT'}"
    )


def markdown(levels: list[Level]) -> str:
    rows = [
        "| clients | messages/s | p50 ms | p95 ms | p99 ms | 202 | 429 | 5xx | requests / 202 | writes / 202 | "
        "TransactionConflicts / 202 | stale versions / 202 | throttles | CPU ms / send (service + clients) | "
        "bare UpdateItem /s | bare p50 / p95 / p99 ms | exact |",
        "|" + " --- |" * 17,
    ]
    for level in levels:
        u, s, b = level.usage, level.sends, level.bare
        sends = max(1, len(s.answers))
        rows.append(
            f"| {level.clients} | {s.per_second(202):.1f} | {s.p(0.5):.0f} | {s.p(0.95):.0f} | {s.p(0.99):.0f} | "
            f"{level.accepted} | {level.count(lambda c: c == 429)} | {level.count(lambda c: c >= 500)} | "
            f"{level.per_accepted(u.requests):.2f} | {level.per_accepted(u.writes):.2f} | "
            f"{level.per_accepted(u.dynamo['!conflict']):.2f} | {level.per_accepted(u.dynamo['!condition']):.2f} | "
            f"{u.dynamo['!throttle']} | {1000 * u.cpu_service / sends:.0f} + {1000 * u.cpu_clients / sends:.0f} | "
            f"{b.per_second():.0f} | {b.p(0.5):.1f} / {b.p(0.95):.1f} / {b.p(0.99):.1f} | "
            f"{'yes' if level.exact else '**no**'} |"
        )
    return "\n".join(rows)


def section_of(levels: list[Level], quick: bool, workers: int) -> Section:
    each = QUICK_SENDS_PER_CLIENT if quick else SENDS_PER_CLIENT
    loads = ", ".join(f"{lv.usage.load[0]:.1f}→{lv.usage.load[1]:.1f}" for lv in levels)
    section = Section(
        "Single sends on one account (local mode)",
        "`python -m local.run` as a subprocess on free ports: LOCAL_SCHEDULES=off, the DynamoDB stand-in's "
        f"AWS fidelity on (local.dynamo_fidelity: latency, TransactionConflict, partition throughput), "
        f"LOCAL_FUNCTION_CONCURRENCY={workers} worker processes per function (one request at a time each, as "
        "Lambda environments), Twilio the local stand-in (a number it accepts with no status callback, so "
        "the rows are the send path alone). One fresh account per level holds 1,000,000 purchased credits. "
        "N client threads, each with its own `requests.Session`, make one warm-up send, then "
        f"{', '.join(f'{n}×{k}' for n, k in each.items())} (clients×sends) POST /v1/messages with fresh "
        "Idempotency-Keys after a common start (before it, the pool is filled with one warm worker per client, up "
        "to its size, so no cold start falls inside the run); messages/s counts the 202s over the run's wall time, "
        "latency is every answer's. The baseline is the same threads doing one bare conditional UpdateItem "
        "(a counter under a ConditionExpression) against the same DynamoDB stand-in, right after. DynamoDB "
        "requests, TransactionConflicts (cancellation reason or TransactionConflictException), failed "
        "conditions (a stale version) and throttles are the stand-in's own counts of the send function's "
        "requests (GET /__local/dynamo; the workers' SDK User-Agent names their function). CPU: local.run "
        "(gateway, moto, stand-ins) and every worker from /proc, plus this process's client threads. "
        "Exact: once every hold handed to Twilio has ended, the pools fell by exactly the credits of every "
        "202 (warm-ups included) plus those still held by holds never handed over (a 429 whose give-back "
        "could not land; the sweeper returns them after its grace, and schedules are off here), and "
        f"local/check_ledger.py finds nothing. 1-minute load average per level: {loads}.",
    )
    section.closing = CLOSING
    by = {lv.clients: lv for lv in levels}
    for level in levels:
        u, s = level.usage, level.sends
        plural = "s" if level.clients > 1 else ""
        errors = level.count(lambda c: c >= 500)
        section.rows.append(
            Row(
                f"single sends, {level.clients} client{plural}: messages/s, p50 / p95 / p99",
                f"{s.per_second(202):.1f}/s, {s.p(0.5):.0f} / {s.p(0.95):.0f} / {s.p(0.99):.0f} ms",
                f"bare UpdateItem {level.bare.per_second():.0f}/s, {level.bare.p(0.5):.1f} / "
                f"{level.bare.p(0.95):.1f} / {level.bare.p(0.99):.1f} ms",
                f"{s.p(0.5) / level.bare.p(0.5):.1f}× at p50; {level.accepted} × 202, "
                f"{level.count(lambda c: c == 429)} × 429",
                "no 5xx, exact",
                errors == 0 and level.exact,
            )
        )
        section.rows.append(
            Row(
                f"single sends, {level.clients} client{plural}: DynamoDB per 202",
                f"{level.per_accepted(u.requests):.2f} requests ({level.per_accepted(u.writes):.2f} writes), "
                f"{level.per_accepted(u.dynamo['!conflict']):.2f} TransactionConflicts, "
                f"{level.per_accepted(u.dynamo['!condition']):.2f} stale, {u.dynamo['!throttle']} throttles",
                "bare: 1 request per write",
                f"{level.per_accepted(u.dynamo['transact_write_items']) / 2:.2f} transaction attempts per "
                f"movement; CPU {1000 * u.cpu_service / max(1, len(s.answers)):.0f} ms per send",
                "as few as the design allows",
                None,
            )
        )
        if errors:
            section.notes.append(f"{errors} answers 5xx with {level.clients} clients (must be 0).")
        if not level.exact:
            section.notes.append(
                f"credits not exact with {level.clients} clients: spent {level.spent}, charged "
                f"{level.charged}; ledger check {level.ledger or 'clean'}."
            )
    if 1 in by:
        one = by[1]
        ratio = one.sends.p(0.5) / one.bare.p(0.5)
        section.rows.append(
            Row(
                "single send p50 overhead, 1 client",
                f"{one.sends.p(0.5):.0f} ms",
                f"bare UpdateItem {one.bare.p(0.5):.1f} ms",
                f"{ratio:.1f}×",
                f"≤ {P50_TARGET:g}×",
                ratio <= P50_TARGET,
            )
        )
        if ratio > P50_TARGET:
            section.notes.append(
                f"send p50 at 1 client: {ratio:.1f}× the bare UpdateItem against ≤ {P50_TARGET:g}× "
                f"({ratio / P50_TARGET:.1f}× over)."
            )
    if 1 in by and 32 in by:
        scale = by[32].sends.per_second(202) / max(1e-9, by[1].sends.per_second(202))
        section.rows.append(
            Row(
                "single sends: 32 clients against 1",
                f"{by[32].sends.per_second(202):.1f}/s",
                f"1 client {by[1].sends.per_second(202):.1f}/s",
                f"{scale:.2f}×",
                f"≥ {SCALE_TARGET:g}×",
                scale >= SCALE_TARGET,
            )
        )
        if scale < SCALE_TARGET:
            section.notes.append(
                f"messages/s at 32 clients: {scale:.2f}× the 1-client rate against ≥ {SCALE_TARGET:g}× "
                f"({SCALE_TARGET / scale:.1f}× short)."
            )
    return section


def run(quick: bool, workers: int = WORKERS) -> Section:
    announce("single sends on one account through the service (local mode)")
    levels = measure(quick, workers)
    print("\n" + markdown(levels))
    return section_of(levels, quick, workers)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sends per client")
    parser.add_argument("--workers", type=int, default=WORKERS, help="worker processes per function")
    args = parser.parse_args(argv)
    from bench.common import CORE_LAYER

    if str(CORE_LAYER) not in sys.path:
        sys.path.append(str(CORE_LAYER))
    print(f"# single sends — {machine()}")
    section = run(args.quick, args.workers)
    from bench.__main__ import table

    print("\nRows as `python -m bench` writes them into docs/performance.md:\n")
    print(table(section.rows, markdown=True))
    print("", *section.notes, sep="\n- ")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
