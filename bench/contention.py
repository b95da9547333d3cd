"""Many sends on one hot account: raw DynamoDB request patterns for one send (a reserve, then a post), each
driven by 1, 8, 32 and 64 concurrent clients against the DynamoDB stand-in with its AWS-like fidelity
(latency, TransactionConflict, 1,000 WCU/s per partition), beside a bare conditional UpdateItem measured
in the same run. `python -m bench.contention [--quick] [--patterns A,B]`; docs/design/concurrency.md says
what the patterns are and what the numbers mean.

The moto server runs in a process of its own (its CPU is measured there); the clients are threads of this
process, each with its own boto3 client, as separate Lambda environments would have. Threads, not
processes: on two cores more processes add no CPU, a client spends nearly all its time waiting on the
server's latency (the GIL is released), and 64 interpreters would cost more memory and start-up than the
run itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.common import ROOT, Row, Section, announce, free_port, machine, percentile
from bench.send_patterns import (
    PATTERNS,
    POOL,
    START_CREDITS,
    TABLE,
    TODAY_LIMIT,
    Client,
    GroupWriter,
    Pinned,
    PostGaveUp,
    Tally,
    arithmetic_send,
    balance_item,
    bare_write,
    full_jitter,
    grouped_send,
    key,
    today_backoff,
    write_units_per_send,
)

CLIENTS = (1, 8, 32, 64)
SENDS_PER_CLIENT = {1: 100, 8: 25, 32: 8, 64: 4}
QUICK_SENDS_PER_CLIENT = {1: 30, 8: 8, 32: 3, 64: 2}


# ---- running ------------------------------------------------------------------------------------------


@dataclass
class Run:
    pattern: str
    clients: int
    sends: int
    seconds: float
    tally: Tally
    cpu_client: float
    cpu_server: float
    exact: bool
    batch: float = 1.0  # D: reserves per transaction, on average

    @property
    def note(self) -> str:
        return f"batches of {self.batch:.1f} reserves on average" if self.pattern == "D" else ""

    @property
    def write_units(self) -> float:
        return write_units_per_send(self.pattern, self.batch)

    @property
    def per_second(self) -> float:
        return (self.sends - self.tally.failures) / self.seconds

    def per_send(self, count: float) -> float:
        return count / max(1, self.sends - self.tally.failures)

    @property
    def cpu_per_send(self) -> float:
        """Milliseconds of CPU, clients' and server's, per send attempted."""
        return 1000 * (self.cpu_client + self.cpu_server) / max(1, self.sends)

    def p(self, fraction: float) -> float:
        return percentile(self.tally.latencies, fraction) * 1000 if self.tally.latencies else float("nan")


def server_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def dynamo_server() -> Iterator[tuple[str, int]]:
    """The moto server with the fidelity layer, alone in its own process; yields (URL, pid)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.contention", "--serve", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("ready"):
            raise RuntimeError(f"the DynamoDB stand-in did not start: {line!r}")
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def serve(port: int) -> None:
    """`--serve PORT`: what dynamo_server() starts; runs until its stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    from local import dynamo_fidelity
    from local.moto_dynamo import create_tables, moto_client, patch_moto

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    patch_moto()
    dynamo_fidelity.configure(dynamo_fidelity.Fidelity.from_environment(default_on=True))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    create_tables(moto_client(f"http://127.0.0.1:{port}"))
    print("ready", json.dumps(dynamo_fidelity.current().__dict__, default=str), flush=True)
    sys.stdin.read()
    server.stop()


def run_one(pattern: str, clients: list[Client], each: int, endpoint: str, server_pid: int) -> Run:
    account_id = f"hot-{pattern}-{len(clients)}-{uuid.uuid4().hex[:6]}"
    setup = clients[0]
    setup.ddb.put_item(TableName=TABLE, Item=balance_item(account_id))
    setup.ddb.put_item(TableName=TABLE, Item={**key(account_id, "COUNTER"), "n": {"N": "0"}})
    for client in clients:
        client.tally = Tally()
    writer = GroupWriter(Client(endpoint), account_id) if pattern == "D" else None
    start = threading.Barrier(len(clients) + 1)

    def drive(client: Client) -> None:
        send = sender(pattern, client, account_id, writer)
        start.wait()
        for _ in range(each):
            began = time.perf_counter()
            try:
                attempts = send()
            except PostGaveUp:
                client.tally.failures += 1
                client.tally.pending += 1
                continue
            except Exception as error:  # counted and shown: a pattern's own failure, not the bench's
                client.tally.failures += 1
                client.tally.errors[f"{type(error).__name__}: {str(error)[:80]}"] += 1
                continue
            client.tally.latencies.append(time.perf_counter() - began)
            client.tally.over_today += attempts > TODAY_LIMIT

    threads = [threading.Thread(target=drive, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    cpu_client, cpu_server = time.process_time(), server_cpu(server_pid)
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    cpu_client, cpu_server = time.process_time() - cpu_client, server_cpu(server_pid) - cpu_server
    batch = 1.0
    if writer is not None:
        writer.stop()
        batch = sum(writer.batches) / max(1, len(writer.batches))
        for name, count in writer.client.tally.requests.items():
            clients[0].tally.requests[name] += count
        clients[0].tally.conflicts += writer.client.tally.conflicts
        clients[0].tally.stale += writer.client.tally.stale
        clients[0].tally.throttles += writer.client.tally.throttles
    tally = Tally()
    for client in clients:
        tally.add(client.tally)
    sends = len(clients) * each
    return Run(
        pattern,
        len(clients),
        sends,
        seconds,
        tally,
        cpu_client,
        cpu_server,
        check(setup, account_id, pattern, sends - tally.failures, tally.pending),
        batch,
    )


def sender(pattern: str, client: Client, account_id: str, writer: GroupWriter | None) -> Callable[[], int]:
    """One send of the pattern for this client (A, A2 and C keep the client's last known balance)."""
    if pattern == "bare":
        return lambda: bare_write(client, account_id)
    if pattern in ("A", "A2", "C"):
        backoff = today_backoff if pattern == "A" else full_jitter
        return Pinned(client, account_id, backoff, marker=pattern == "C").send
    if pattern == "B":
        return lambda: arithmetic_send(client, account_id)
    assert writer is not None
    return lambda: grouped_send(client, account_id, writer)


def check(client: Client, account_id: str, pattern: str, landed: int, pending: int) -> bool:
    """The pool moved by exactly the reserves that landed, held credits are exactly the holds whose post
    gave up, no pool went negative."""
    item = client.balance(account_id)
    if pattern == "bare":
        counter = client.ddb.get_item(TableName=TABLE, Key=key(account_id, "COUNTER"), ConsistentRead=True)[
            "Item"
        ]
        return int(counter["n"]["N"]) == landed
    pool = int(item["pools"]["M"][POOL]["N"])
    held = int(item["held"]["N"])
    markers = client.ddb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :open)",
        ExpressionAttributeValues={":pk": {"S": f"ACCT#{account_id}"}, ":open": {"S": "OPEN#"}},
        ConsistentRead=True,
    )["Items"]
    still_held = len(markers) if pattern in ("C", "D") else held
    return pool == START_CREDITS - landed - pending and still_held == pending and pool >= 0


def run(quick: bool, patterns: list[str] | None = None) -> Section:
    announce("contention on one account (DynamoDB stand-in with AWS fidelity)")
    each = QUICK_SENDS_PER_CLIENT if quick else SENDS_PER_CLIENT
    chosen = patterns or ["bare", *PATTERNS]
    section = Section("Contention on one account", method())
    runs: list[Run] = []
    with dynamo_server() as (endpoint, pid):
        pool = [Client(endpoint) for _ in range(max(CLIENTS))]
        for clients in CLIENTS:
            for pattern in chosen:
                result = run_one(pattern, pool[:clients], each[clients], endpoint, pid)
                runs.append(result)
                print(line(result), flush=True)
    bare = {r.clients: r for r in runs if r.pattern == "bare"}
    for result in runs:
        if result.pattern == "bare":
            continue
        base = bare.get(result.clients)
        section.rows.append(
            Row(
                f"send, pattern {result.pattern}, {result.clients} client{'s' if result.clients > 1 else ''}",
                f"{result.per_second:.1f}/s, p50/p95/p99 "
                f"{result.p(0.5):.0f}/{result.p(0.95):.0f}/{result.p(0.99):.0f} ms",
                f"bare UpdateItem {base.per_second:.0f}/s, p50 {base.p(0.5):.1f} ms" if base else "—",
                f"{result.per_send(sum(result.tally.requests.values())):.1f} requests, "
                f"{result.per_send(result.tally.conflicts):.2f} conflicts per send; {result.tally.throttles} throttles",
                "—",
                None,
            )
        )
    print("\n" + markdown(runs))
    return section


def method() -> str:
    patterns = "; ".join(f"{name}: {text}" for name, text in PATTERNS.items())
    return (
        "The moto server with local.dynamo_fidelity on (AWS defaults) in its own process; client threads each "
        "with a boto3 client (no SDK retries), all sending on one account whose items copy the store's "
        f"(balance, hold, ledger entries). Patterns — {patterns}. `python -m bench.contention` prints the "
        "full table; docs/design/concurrency.md reads it."
    )


def line(r: Run) -> str:
    requests = sum(r.tally.requests.values())
    return (
        f"{r.pattern:>4} {r.clients:>2} clients: {r.per_second:7.1f}/s  p50 {r.p(0.5):6.1f}  p95 {r.p(0.95):6.1f}  "
        f"p99 {r.p(0.99):7.1f} ms  {r.per_send(requests):5.1f} req/send  {r.per_send(r.tally.conflicts):5.2f} "
        f"conflicts/send  {r.per_send(r.tally.stale):5.2f} stale/send  {r.tally.throttles} throttles  "
        f">{TODAY_LIMIT} attempts: {r.tally.over_today}  failed: {r.tally.failures} "
        f"(posts given up {r.tally.pending}; {dict(r.tally.errors) or 'no other error'})  CPU "
        f"{r.cpu_per_send:.1f} ms/send  exact: {r.exact}  {r.note}"
    )


def markdown(runs: list[Run]) -> str:
    header = (
        "| pattern | clients | sends/s | p50 ms | p95 ms | p99 ms | requests/send | conflicts/send | "
        f"stale/send | throttles | sends > {TODAY_LIMIT} attempts | CPU ms/send (client+server) | "
        "WCU/send on AWS | exact |"
    )
    rows = [header, "|" + " --- |" * 14]
    for r in runs:
        requests = sum(r.tally.requests.values())
        rows.append(
            f"| {r.pattern} | {r.clients} | {r.per_second:.1f} | {r.p(0.5):.1f} | {r.p(0.95):.1f} | {r.p(0.99):.1f} | "
            f"{r.per_send(requests):.2f} | {r.per_send(r.tally.conflicts):.2f} | {r.per_send(r.tally.stale):.2f} | "
            f"{r.tally.throttles} | {r.tally.over_today} | {r.cpu_per_send:.1f} | {r.write_units:.1f} "
            f"| {'yes' if r.exact else '**no**'}{' (' + r.note + ')' if r.note else ''} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contention", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sends per client")
    parser.add_argument("--patterns", help=f"comma-separated, of bare,{','.join(PATTERNS)} (default: all)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    print(f"# contention — {machine()}")
    run(args.quick, args.patterns.split(",") if args.patterns else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
