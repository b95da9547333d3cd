"""Send latency and throughput in local mode, beside one bare conditional UpdateItem on the same moto server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.common import ROOT, Row, Section, announce, free_port, percentile

AU = "+61491570110"
ACCOUNT = "bench-load"
START_TIMEOUT = 90.0
TARGET_RATIO = 3.0


CLOSING = """\
- **Send latency in local mode.** The ratio compares a whole send (JWT check, Powertools routing and
  validation, two DynamoDB transactions, one HTTP call to the Twilio stand-in) with one UpdateItem, both
  against the DynamoDB stand-in with its AWS-like latency (a transaction's p50 is about 25 ms, an UpdateItem's
  7.5 ms) and, beyond one client, its TransactionConflicts on the one account's balance item: each send's
  two transactions queue on that item. docs/design/concurrency.md measures the designs that shorten that
  queue; the slim resolver of the cold-start note would cut the in-process share."""


@dataclass
class Load:
    """One run: every timed request's latency, the run's wall time, and every answer (warm-up calls too)."""

    latencies: list[float]
    seconds: float
    answers: list[tuple[int, Any]]

    def per_second(self) -> float:
        return len(self.latencies) / self.seconds


@contextlib.contextmanager
def local_mode() -> Iterator[tuple[str, str]]:
    """`python -m local.run` on free ports with no timers; yields (gateway URL, moto URL)."""
    with tempfile.TemporaryDirectory(prefix="bench-local-") as workdir:
        run_file = Path(workdir) / "local-run.json"
        env = {k: v for k, v in os.environ.items() if k not in ("TWILIO_ACCOUNT_SID", "STRIPE_SECRET_KEY")}
        env.update(
            PORT=str(free_port()),
            MOTO_PORT=str(free_port()),
            LOCAL_SCHEDULES="off",
            LOCAL_RUN_FILE=str(run_file),
            PYTHONUNBUFFERED="1",
        )
        log = Path(workdir) / "local-run.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "local.run"], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not run_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"local mode did not start:\n{log.read_text(errors='replace')[-3000:]}"
                    )
                time.sleep(0.2)
            urls = json.loads(run_file.read_text())
            yield urls["gateway"], urls["moto"]
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _drive(clients: int, each: int, call: Callable[[requests.Session], tuple[int, Any]]) -> Load:
    """`clients` threads, each with its own Session, making `each` calls back to back after a common start."""
    latencies: list[float] = []
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client() -> None:
        mine: list[float] = []
        got: list[tuple[int, Any]] = []
        with requests.Session() as session:
            got.append(call(session))  # opens the connection before the clock starts; its credits count
            start.wait()
            for _ in range(each):
                began = time.perf_counter()
                got.append(call(session))
                mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)
            answers.extend(got)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return Load(latencies, time.perf_counter() - began, answers)


def _credits(session: requests.Session, base: str, headers: dict[str, str]) -> int:
    answer = session.get(f"{base}/v1/balance", headers=headers, timeout=30)
    answer.raise_for_status()
    body = answer.json()
    return int(body["included"]["available"]) + sum(int(v) for v in body["purchased"].values())


def run(quick: bool) -> Section:
    from local.token import mint  # after ROOT is importable; mint reads LOCAL_JWT_SECRET like local mode

    announce("send latency and throughput (local mode)")
    each = {1: 30, 8: 8, 32: 3} if quick else {1: 100, 8: 25, 32: 8}
    section = Section(
        "Send latency and throughput",
        "`python -m local.run` as a subprocess on free ports (LOCAL_SCHEDULES=off; Twilio is the local "
        "stand-in). One account gets plenty of credits through the admin API (create, then an adjustment "
        "on purchased:AU). N client threads, each with its own `requests.Session`, each make a fixed "
        f"number of POST /v1/messages with fresh Idempotency-Keys ({', '.join(f'{n}×{k}' for n, k in each.items())} "
        "clients×requests). The baseline is the same client machinery, at the same concurrency, doing one "
        "bare conditional UpdateItem (ConditionExpression on a counter) against the same moto server with "
        "boto3. Latency is per request, from send to full answer; sends per second is requests over the "
        "run's wall time. The local gateway runs each function in a pool of worker processes, one request "
        "at a time each, as Lambda's execution environments (LOCAL_FUNCTION_CONCURRENCY, default 8 per "
        "function), and the DynamoDB stand-in adds AWS's latency, TransactionConflicts and partition "
        "throughput (local.dynamo_fidelity). Correctness: the balance before "
        "minus the balance after must equal the sum of the `credits` of every 202 `sent` answer.",
    )
    section.closing = CLOSING
    with local_mode() as (gateway, moto):
        from botocore.config import Config

        from local.moto_dynamo import moto_client

        admin = {"Authorization": f"Bearer {mint('support', 'admin')}"}
        user = {"Authorization": f"Bearer {mint(ACCOUNT)}"}
        setup = requests.Session()
        created = setup.post(
            f"{gateway}/v1/admin/accounts",
            json={
                "account_id": ACCOUNT,
                "plan": "starter",
                "home_region": "AU",
                "billing_anchor": "2026-01-05",
            },
            headers=admin,
            timeout=30,
        )
        assert created.status_code == 201, created.text
        adjusted = setup.post(
            f"{gateway}/v1/admin/accounts/{ACCOUNT}/adjustments",
            json={"pool": "purchased:AU", "credits": 1_000_000, "reason": "benchmark"},
            headers={**admin, "Idempotency-Key": "bench-credits"},
            timeout=30,
        )
        assert adjusted.status_code == 200, adjusted.text

        def send(session: requests.Session) -> tuple[int, Any]:
            answer = session.post(
                f"{gateway}/v1/messages",
                json={"to": AU, "body": "Your code is 123456"},
                headers={**user, "Idempotency-Key": uuid.uuid4().hex},
                timeout=60,
            )
            return answer.status_code, answer.json()

        config = Config(max_pool_connections=64, retries={"max_attempts": 1})
        ddb = moto_client(moto, config)
        key = {"pk": {"S": "BENCH"}, "sk": {"S": "COUNTER"}}
        ddb.put_item(TableName="CreditsTable", Item={**key, "n": {"N": "0"}})

        def bare(_: requests.Session) -> tuple[int, Any]:
            ddb.update_item(
                TableName="CreditsTable",
                Key=key,
                UpdateExpression="SET n = n + :one",
                ConditionExpression="n < :cap",
                ExpressionAttributeValues={":one": {"N": "1"}, ":cap": {"N": "1000000000"}},
            )
            return 200, None

        for clients, count in each.items():
            before = _credits(setup, gateway, user)
            load = _drive(clients, count, send)
            after = _credits(setup, gateway, user)
            charged = sum(
                int(body["credits"])
                for status, body in load.answers
                if status == 202 and body["status"] == "sent"
            )
            base = _drive(clients, count, bare)
            _report(section, clients, load, base, before - after, charged)
    return section


def _report(section: Section, clients: int, load: Load, base: Load, spent: int, charged: int) -> None:
    p = {q: percentile(load.latencies, q) * 1000 for q in (0.5, 0.95, 0.99)}
    b = {q: percentile(base.latencies, q) * 1000 for q in (0.5, 0.95, 0.99)}
    ratio = p[0.5] / b[0.5]
    statuses = sorted({status for status, _ in load.answers})
    exact = spent == charged
    print(
        f"{clients} clients: send p50 {p[0.5]:.1f} ms p95 {p[0.95]:.1f} p99 {p[0.99]:.1f}, "
        f"{load.per_second():.1f}/s; bare UpdateItem p50 {b[0.5]:.2f} ms p95 {b[0.95]:.2f} p99 {b[0.99]:.2f}, "
        f"{base.per_second():.0f}/s; p50 ratio {ratio:.1f}×; statuses {statuses}; "
        f"credits before−after {spent} vs charged {charged}: {'exact' if exact else 'MISMATCH'}"
    )
    section.rows.append(
        Row(
            f"send, {clients} client{'s' if clients > 1 else ''}: p50 / p95 / p99, sends/s",
            f"{p[0.5]:.1f} / {p[0.95]:.1f} / {p[0.99]:.1f} ms, {load.per_second():.1f}/s",
            f"UpdateItem {b[0.5]:.2f} / {b[0.95]:.2f} / {b[0.99]:.2f} ms, {base.per_second():.0f}/s",
            f"{ratio:.1f}× at p50",
            f"≤ {TARGET_RATIO:g}×",
            ratio <= TARGET_RATIO,
        )
    )
    section.rows.append(
        Row(
            f"credits under load, {clients} client{'s' if clients > 1 else ''}",
            f"before − after = {spent}",
            f"charged (sum of 202 answers) = {charged}",
            "exact" if exact else f"off by {spent - charged}",
            "exact",
            exact,
        )
    )
    if ratio > TARGET_RATIO:
        section.notes.append(
            f"send p50 with {clients} client(s): {ratio:.1f}× the bare UpdateItem against ≤ {TARGET_RATIO:g}× "
            f"({ratio / TARGET_RATIO:.1f}× over)."
        )
