"""A soak in local mode: concurrent clients send, quote, read and buy for a while; then the ledger must check."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from local.moto_dynamo import moto_client
from local.token import mint
from tests.local_mode import LocalMode, start, stop

ROOT = Path(__file__).resolve().parents[2]
# The hourly refresh runs every 3600 / 240 = 15 s, the 5-minute sweeper every 1.25 s.
SCHEDULE_SCALE = 240
START_TIMEOUT = 90.0
REQUEST_TIMEOUT = 60.0
FAILS = "+61491570157"  # accepted, then callback `failed`: the credits come back
REFUSED = "+61491570156"  # refused by Twilio at once
UNDELIVERED = "+61491570158"  # accepted, then `undelivered`: stays charged
DELIVERED = tuple(f"+6149157011{n}" for n in range(10))
START_CREDITS = 200  # purchased AU credits each odd soak account gets from support
LOW_CREDITS = 10  # what each even one gets, after support took its 50 included credits away
# Weighted operation mix (percent).
MIX = {
    "send": 42,
    "quote": 14,
    "balance": 14,
    "ledger": 10,
    "message": 8,
    "replay": 7,
    "reuse": 3,
    "purchase": 2,
}
BODIES = (
    "Your table is ready.",
    "Thanks for visiting! Leave us a review: https://example.com/r/1",
    "Reminder: appointment tomorrow at 10:00. Reply STOP to opt out. " * 3,
    "Grüße aus Sydney 🌏",
)


@dataclass
class Stats:
    """What the clients did; one lock for all of it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    served: int = 0
    operations: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "402 insufficient_credits"
    accepted: set[str] = field(default_factory=set)  # message ids of 202s (first sends and replays)
    sent_to_twilio: set[str] = field(default_factory=set)  # the accepted ones not to the refused number
    replays: int = 0
    replay_mismatches: list[str] = field(default_factory=list)
    purchases_paid: Counter[str] = field(default_factory=Counter)  # account → packs paid on the pay page
    failures: list[str] = field(default_factory=list)  # transport errors and surprises

    def take(self, limit: int) -> bool:
        with self.lock:
            if self.operations >= limit:
                return False
            self.operations += 1
            return True

    def record(self, answer: requests.Response) -> None:
        with self.lock:
            self.served += 1
            self.statuses[answer.status_code] += 1
            if answer.status_code >= 400:
                code = "-"
                try:
                    code = str(answer.json()["error"]["code"])
                except (ValueError, KeyError, TypeError):
                    code = "(no JSON error shape)"
                self.errors[f"{answer.status_code} {code}"] += 1


class Client(threading.Thread):
    """One API client: its own session, looping over the mix until the deadline or the operation budget."""

    def __init__(
        self,
        number: int,
        base_url: str,
        tokens: dict[str, str],
        stats: Stats,
        deadline: float,
        max_ops: int,
    ) -> None:
        super().__init__(name=f"soak-client-{number}", daemon=True)
        self.base_url = base_url
        self.tokens = tokens
        self.stats = stats
        self.deadline = deadline
        self.max_ops = max_ops
        self.random = random.Random(number)
        self.session = requests.Session()
        self.sent: list[tuple[str, str, dict[str, str], str]] = []  # (account, key, body, message id)

    def call(
        self, account: str, method: str, path: str, *, json: Any = None, key: str | None = None
    ) -> requests.Response | None:
        headers = {"Authorization": f"Bearer {self.tokens[account]}"}
        if key:
            headers["Idempotency-Key"] = key
        try:
            answer = self.session.request(
                method, self.base_url + path, json=json, headers=headers, timeout=REQUEST_TIMEOUT
            )
        except requests.RequestException as failure:
            with self.stats.lock:
                self.stats.failures.append(f"{method} {path}: {type(failure).__name__}: {failure}")
            return None
        self.stats.record(answer)
        return answer

    def run(self) -> None:
        operations, weights = list(MIX), list(MIX.values())
        while time.monotonic() < self.deadline and self.stats.take(self.max_ops):
            operation = self.random.choices(operations, weights)[0]
            if operation in ("replay", "reuse", "message") and not self.sent:
                operation = "send"
            account = self.random.choice(list(self.tokens))
            with self.stats.lock:
                self.stats.by_operation[operation] += 1
            getattr(self, operation)(account)

    def recipient(self) -> str:
        roll = self.random.random()
        if roll < 0.10:
            return FAILS
        if roll < 0.15:
            return REFUSED
        if roll < 0.20:
            return UNDELIVERED
        return self.random.choice(DELIVERED)

    def send(self, account: str) -> None:
        body = {"to": self.recipient(), "body": self.random.choice(BODIES)}
        key = uuid.uuid4().hex
        answer = self.call(account, "POST", "/v1/messages", json=body, key=key)
        if answer is not None and answer.status_code == 202:
            message_id = str(answer.json()["message_id"])
            self.sent.append((account, key, body, message_id))
            with self.stats.lock:
                self.stats.accepted.add(message_id)
                if body["to"] != REFUSED:
                    self.stats.sent_to_twilio.add(message_id)

    def replay(self, account: str) -> None:
        """The same key and body again: the same answer, no second debit or send."""
        account, key, body, message_id = self.random.choice(self.sent)
        answer = self.call(account, "POST", "/v1/messages", json=body, key=key)
        if answer is None:
            return
        with self.stats.lock:
            self.stats.replays += 1
            if answer.status_code != 202 or answer.json().get("message_id") != message_id:
                self.stats.replay_mismatches.append(f"{message_id}: {answer.status_code} {answer.text[:200]}")

    def reuse(self, account: str) -> None:
        """The same key with another body: 422 idempotency_key_reused."""
        account, key, body, _ = self.random.choice(self.sent)
        other = {"to": body["to"], "body": body["body"] + " (changed)"}
        answer = self.call(account, "POST", "/v1/messages", json=other, key=key)
        if answer is not None and answer.status_code != 422:
            with self.stats.lock:
                self.stats.failures.append(f"key reuse answered {answer.status_code}: {answer.text[:200]}")

    def quote(self, account: str) -> None:
        body = {"to": self.recipient(), "body": self.random.choice(BODIES)}
        self.call(account, "POST", "/v1/messages/quote", json=body)

    def balance(self, account: str) -> None:
        self.call(account, "GET", "/v1/balance")

    def ledger(self, account: str) -> None:
        self.call(account, "GET", "/v1/ledger?limit=20")

    def message(self, account: str) -> None:
        account, _, _, message_id = self.random.choice(self.sent)
        self.call(account, "GET", f"/v1/messages/{message_id}")

    def purchase(self, account: str) -> None:
        """Checkout, the pay page, then Pay: the stand-in pays and sends the signed webhooks."""
        answer = self.call(
            account, "POST", "/v1/packs/checkout", json={"region": "AU", "quantity": 1}, key=uuid.uuid4().hex
        )
        if answer is None or answer.status_code != 201:
            return
        try:
            page = self.session.get(answer.json()["checkout_url"], timeout=REQUEST_TIMEOUT)
            action = re.search(r'<form method="post" action="([^"]+)"', page.text)
            card = re.search(r'<option value="(\d+)" selected>', page.text)
            if page.status_code != 200 or not action or not card:
                raise ValueError(f"pay page {page.status_code}: {page.text[:200]}")
            paid = self.session.post(
                action.group(1), data={"card": card.group(1)}, allow_redirects=False, timeout=REQUEST_TIMEOUT
            )
            if paid.status_code != 303:
                raise ValueError(f"pay answered {paid.status_code}: {paid.text[:200]}")
        except (requests.RequestException, ValueError) as failure:
            with self.stats.lock:
                self.stats.failures.append(f"purchase: {failure}")
            return
        with self.stats.lock:
            self.stats.served += 2
            self.stats.purchases_paid[account] += 1


def create_accounts(base_url: str, count: int) -> dict[str, str]:
    """`count` fresh starter accounts (AU), funded by support adjustments; account → token."""
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {mint('support', 'admin')}"
    run = uuid.uuid4().hex[:6]
    tokens: dict[str, str] = {}
    for n in range(count):
        account_id = f"soak-{run}-{n:02d}"
        body = {
            "account_id": account_id,
            "plan": "starter",
            "home_region": "AU",
            "billing_anchor": "2026-01-05",
        }
        created = admin.post(f"{base_url}/v1/admin/accounts", json=body, timeout=REQUEST_TIMEOUT)
        if created.status_code != 201:
            raise RuntimeError(f"create {account_id}: {created.status_code} {created.text}")
        # Odd accounts are well funded; even ones start nearly empty (402s until a pack comes in).
        moves = (
            [("purchased:AU", START_CREDITS)] if n % 2 else [("included", -50), ("purchased:AU", LOW_CREDITS)]
        )
        for pool, credits in moves:
            adjusted = admin.post(
                f"{base_url}/v1/admin/accounts/{account_id}/adjustments",
                json={"pool": pool, "credits": credits, "reason": "soak: starting credits"},
                headers={"Idempotency-Key": f"soak-start-{account_id}-{pool}"},
                timeout=REQUEST_TIMEOUT,
            )
            if adjusted.status_code != 200:
                raise RuntimeError(f"adjust {account_id}: {adjusted.status_code} {adjusted.text}")
        tokens[account_id] = mint(account_id)
    return tokens


# ---- afterwards ---------------------------------------------------------------------------------------


def ledger_state(moto_url: str, accounts: list[str]) -> dict[str, Any]:
    """Per account from the table: pools, held, pending holds, credits by entry kind, posted/voided holds."""
    from smscredits.adapters.dynamo.reader import DynamoStatements
    from smscredits.domain.audit import check_account

    client = moto_client(moto_url)
    reader = DynamoStatements(os.environ.get("TABLE_NAME") or "CreditsTable", client=client)
    state: dict[str, Any] = {}
    for account_id in accounts:
        account, entries, holds = reader.partition(account_id)
        kinds: Counter[str] = Counter()
        purchases = 0
        for entry in entries:
            kinds[entry.kind] += entry.amount
            purchases += entry.kind == "purchase"
        ended: Counter[str] = Counter()
        for hold in holds:
            ended[hold.status] += hold.credits
        state[account_id] = {
            "pools": dict(account.pools),
            "held": account.held,
            "pending": sum(h.status == "pending" for h in holds),
            "kinds": kinds,
            "purchase_entries": purchases,
            "holds": len(holds),
            "ended": ended,  # hold credits by the hold's status: pending, posted, voided, refunded
            "problems": check_account(account, entries, holds),
        }
    return state


def settle(moto_url: str, accounts: list[str], stats: Stats, timeout: float = 60.0) -> dict[str, Any]:
    """Wait for callbacks and webhooks: no pending hold, every paid pack granted, nothing changing."""
    deadline = time.monotonic() + timeout
    previous: Any = None
    while True:
        state = ledger_state(moto_url, accounts)
        snapshot = {a: (s["pools"], s["held"], s["holds"]) for a, s in state.items()}
        done = all(
            s["pending"] == 0 and s["purchase_entries"] >= stats.purchases_paid[a] for a, s in state.items()
        )
        if (done and snapshot == previous) or time.monotonic() > deadline:
            return state
        previous = snapshot
        time.sleep(1.0)


def check_ledger(mode: LocalMode, accounts: list[str]) -> tuple[bool, str]:
    """`python -m local.check_ledger ACCOUNT` against the run file, for every soak account."""
    env = {**os.environ, "LOCAL_RUN_FILE": str(mode.run_file)}
    env.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    outputs, ok = [], True
    for account_id in accounts:
        done = subprocess.run(
            [sys.executable, "-m", "local.check_ledger", account_id],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        ok = ok and done.returncode == 0
        outputs.append(done.stdout.strip() + done.stderr.strip())
    return ok, "\n".join(outputs)


def run_soak(
    seconds: int = 60, clients: int = 32, accounts: int = 10, max_ops: int = 1_000_000
) -> dict[str, Any]:
    """Start local mode, drive it, settle, check; returns the figures (see `report`)."""
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        # The DynamoDB-like layer is on (TransactionConflicts, throttling, latency), as in local mode;
        # LOCAL_DYNAMO_FIDELITY=off runs the soak against bare moto.
        fidelity = os.environ.get("LOCAL_DYNAMO_FIDELITY") or "on"
        mode = start(
            Path(workdir),
            timeout=START_TIMEOUT,
            LOCAL_SCHEDULE_SCALE=str(SCHEDULE_SCALE),
            LOCAL_DYNAMO_FIDELITY=fidelity,
        )
        try:
            return _drive(mode, seconds, clients, accounts, max_ops)
        finally:
            stop(mode)


def _drive(mode: LocalMode, seconds: int, clients: int, count: int, max_ops: int) -> dict[str, Any]:
    moto_url = str(json.loads(mode.run_file.read_text())["moto"])
    tokens = create_accounts(mode.base_url, count)
    accounts = sorted(tokens)
    stats = Stats()
    started = time.monotonic()
    deadline = started + seconds
    threads = [Client(n, mode.base_url, tokens, stats, deadline, max_ops) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT + 30)
    duration = time.monotonic() - started
    state = settle(moto_url, accounts, stats)
    ledger_ok, ledger_output = check_ledger(mode, accounts)
    twilio = requests.get(f"{mode.base_url}/__local/twilio/messages", timeout=REQUEST_TIMEOUT).json()[
        "messages"
    ]
    log_text = mode.log.read_text(errors="replace")
    refresh_runs = re.findall(r"RefreshFunction \(.*?\) ran: (.*)", log_text)
    sweep_runs = len(re.findall(r"SweeperFunction \(.*?\) ran", log_text))

    kinds: Counter[str] = Counter()
    for s in state.values():
        kinds.update(s["kinds"])
    held = -kinds["hold"]
    ended: Counter[str] = Counter()
    for s in state.values():
        ended.update(s["ended"])
    negatives = [a for a, s in state.items() if s["held"] < 0 or any(v < 0 for v in s["pools"].values())]
    pending = sum(s["pending"] for s in state.values())
    purchase_mismatch = {
        a: (stats.purchases_paid[a], s["purchase_entries"])
        for a, s in state.items()
        if stats.purchases_paid[a] != s["purchase_entries"]
    }
    server_errors = sum(n for status, n in stats.statuses.items() if status >= 500)
    problems = [p for s in state.values() for p in s["problems"]]
    checks = {
        "ledger_check": ledger_ok,
        "audit_problems": problems,
        "negative_pools": negatives,
        "pending_holds": pending,
        # Every held credit ended exactly one way; the refund and void entries match the holds that say so.
        "holds_accounted": held == ended["posted"] + ended["refunded"] + ended["voided"] + ended["pending"]
        and ended["refunded"] == kinds["refund"]
        and ended["voided"] == kinds["void"],
        "twilio_sends": len(twilio),
        "accepted_to_twilio": len(stats.sent_to_twilio),
        "twilio_matches_accepted": len(twilio) == len(stats.sent_to_twilio),
        "purchases_granted_once": not purchase_mismatch,
        "purchase_mismatch": purchase_mismatch,
        "replay_mismatches": stats.replay_mismatches,
        "transport_failures": stats.failures,
    }
    passed = (
        ledger_ok
        and not problems
        and not negatives
        and pending == 0
        and bool(checks["holds_accounted"])
        and bool(checks["twilio_matches_accepted"])
        and not purchase_mismatch
        and not stats.replay_mismatches
        and not stats.failures
        and server_errors == 0
    )
    return {
        "seconds": seconds,
        "clients": clients,
        "accounts": count,
        "duration": duration,
        "requests": stats.served,
        "operations": dict(stats.by_operation),
        "requests_per_second": stats.served / duration if duration else 0.0,
        "statuses": dict(sorted(stats.statuses.items())),
        "errors": dict(sorted(stats.errors.items())),
        "server_errors": server_errors,
        "messages_accepted": len(stats.accepted),
        "replays": stats.replays,
        "purchases_paid": sum(stats.purchases_paid.values()),
        "credits": {
            "held": held,
            "posted": ended["posted"] + ended["refunded"],
            "voided": kinds["void"],
            "refunded": kinds["refund"],
            "charged": ended["posted"],
            "purchased": kinds["purchase"],
            "adjusted": kinds["adjustment"],
            "granted": kinds["grant"],
            "expired": -kinds["expiry"],
        },
        "refresh_runs": refresh_runs,
        "sweeper_runs": sweep_runs,
        "checks": checks,
        "ledger_output": ledger_output,
        "passed": passed,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
    }


def report(result: dict[str, Any]) -> str:
    checks = result["checks"]
    lines = [
        f"soak: {result['clients']} clients, {result['accounts']} accounts, {result['duration']:.1f} s "
        f"({result['machine']})",
        f"requests served: {result['requests']} ({result['requests_per_second']:.1f}/s); "
        f"operations: {', '.join(f'{k}={v}' for k, v in sorted(result['operations'].items()))}",
        f"statuses: {', '.join(f'{k}={v}' for k, v in result['statuses'].items())}",
        "errors by code: " + (", ".join(f"{k}: {v}" for k, v in result["errors"].items()) or "none"),
        f"5xx: {result['server_errors']}",
        f"messages accepted: {result['messages_accepted']}, replays: {result['replays']}, "
        f"packs paid: {result['purchases_paid']}",
        "credits moved: " + ", ".join(f"{k} {v}" for k, v in result["credits"].items()),
        f"refresh runs: {len(result['refresh_runs'])} ({'; '.join(result['refresh_runs'][:2])}), "
        f"sweeper runs: {result['sweeper_runs']}",
        f"ledger check (python -m local.check_ledger, every account): {'ok' if checks['ledger_check'] else 'FAILED'}",
        f"audit problems: {len(checks['audit_problems'])}, negative pools: {len(checks['negative_pools'])}, "
        f"pending holds: {checks['pending_holds']}, held = charged + refunded + voided (+ pending), "
        f"matching the refund and void entries: {checks['holds_accounted']}",
        f"Twilio sends {checks['twilio_sends']} = distinct accepted message ids {checks['accepted_to_twilio']}: "
        f"{checks['twilio_matches_accepted']}",
        f"packs paid = purchase entries: {checks['purchases_granted_once']} {checks['purchase_mismatch'] or ''}",
        f"replay mismatches: {len(checks['replay_mismatches'])}, transport failures: "
        f"{len(checks['transport_failures'])}",
        f"result: {'PASSED' if result['passed'] else 'FAILED'}",
    ]
    for detail in (*checks["audit_problems"], *checks["replay_mismatches"], *checks["transport_failures"]):
        lines.append(f"  {detail}")
    if not checks["ledger_check"]:
        lines.append(result["ledger_output"])
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--max-ops", type=int, default=1_000_000, help="stop after this many operations")
    args = parser.parse_args(argv)
    result = run_soak(args.seconds, args.clients, args.accounts, args.max_ops)
    print(report(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
