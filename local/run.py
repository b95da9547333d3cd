"""`python -m local.run` (`make local`): the whole service on this machine, no Docker, no AWS account."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import requests
from moto.server import ThreadedMotoServer
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from local import dynamo_fidelity, run_file, stripe_standin, token
from local.clock import ClockApp, LocalClock
from local.events import EventsApp
from local.gateway import Gateway
from local.moto_dynamo import create_tables, moto_client, patch_moto
from local.outbox import OutboxPoller
from local.queues import Pollers, create_queues, event_sources, sqs_client
from local.schedules import Timers
from local.stripe_billing import StripeBilling
from local.template import function_properties, functions, load, schedules, table_definitions
from local.twilio_standin import TwilioStandIn, describe
from local.workers import quiet_known_warnings

log = logging.getLogger("local.run")

HOST = "127.0.0.1"
TWILIO_MOUNT = "/__local/twilio"
STRIPE_MOUNT = "/__local/stripe"
ADMIN_ACCOUNT = "support"
SAMPLE_NUMBER = "+61491570110"
# The stand-in's subscription prices: price_<plan> bills <plan> (PLAN_PRICES overrides it).
LOCAL_PLAN_PRICES = {f"price_{plan}": plan for plan in ("starter", "essentials", "growth")}


@dataclass(frozen=True)
class DemoAccount:
    account_id: str
    plan: str
    home_region: str
    note: str
    created_at: str | None = None
    billing_anchor: str | None = None


DEMO_ACCOUNTS = (
    DemoAccount("demo-starter", "starter", "AU", "starter, AU: 50 included credits"),
    DemoAccount("demo-essentials", "essentials", "GB", "essentials, UK: 75 included credits"),
    DemoAccount("demo-growth", "growth", "US", "growth, US: 100 included + 200 purchased AU credits"),
    DemoAccount(
        "demo-legacy",
        "starter",
        "AU",
        "starter, AU, created 2025-03-01: legacy credit model",
        created_at="2025-03-01T00:00:00Z",
        billing_anchor="2025-03-01",
    ),
)


# ---- environment ------------------------------------------------------------------------------------


@dataclass
class Environment:
    """Environment variables for the functions: set unless the user set them, always set, never set."""

    defaults: dict[str, str] = field(default_factory=dict)
    forced: dict[str, str] = field(default_factory=dict)
    unset: dict[str, str] = field(default_factory=dict)  # variable → the resource local mode lacks


def template_environment(
    parameters: Mapping[str, str], queues: Mapping[str, str] | None = None
) -> Environment:
    """The functions' environment as template.yaml declares it, for this machine.

    A Ref to a parameter takes `parameters[name]` or the parameter's default (the user's environment may
    override it). A Ref to a table names the local table. A Ref to anything local mode does not run (an
    event bus, a queue) stays unset: the service then takes its local path (events published from the
    outbox by local/outbox.py, every due refresh inline). Every worker of every function gets this one
    environment: the union."""
    declared = load().get("Parameters", {})
    tables = set(table_definitions())
    environment = Environment()
    for name in functions():
        for key, value in function_properties(name)["Environment"]["Variables"].items():
            if isinstance(value, dict) and list(value) == ["Ref"]:
                ref = str(value["Ref"])
                if ref in declared:
                    environment.defaults[key] = parameters.get(ref) or str(declared[ref].get("Default", ""))
                elif ref in tables:
                    environment.forced[key] = ref
                elif queues and ref in queues:
                    environment.forced[key] = queues[ref]
                else:
                    environment.unset[key] = ref
            elif isinstance(value, str | int | float):
                environment.defaults[key] = str(value)
            else:
                log.warning("%s of %s is not a plain value or Ref; not set locally", key, name)
    return environment


def local_file(suffix: str) -> Path:
    """A file of this run next to its run file (the clock's offset)."""
    path = run_file()
    return path.with_name(f"{path.stem}-{suffix}")


def configure_environment(
    gateway_url: str, moto_url: str, queues: Mapping[str, str] | None = None
) -> Environment:
    """Set what the functions read. The user's environment wins, except where it could reach real AWS."""
    parameters = {
        "PublicBaseUrl": gateway_url,
        "SweepGraceSeconds": "120",
        "PlanPrices": json.dumps(LOCAL_PLAN_PRICES),
    }
    environment = template_environment(parameters, queues)
    environment.forced.update(
        {
            "LOCAL_CLOCK_FILE": str(local_file("clock.json")),
            "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
            "AWS_ENDPOINT_URL_SQS": moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    environment.defaults.update(
        {
            "TWILIO_AUTH_TOKEN": "local-twilio-token",
            "STRIPE_WEBHOOK_SECRET": "whsec_local",
            "LOCAL_JWT_SECRET": token.DEFAULT_SECRET,
            "POWERTOOLS_METRICS_DISABLED": "true",  # no EMF blobs in the local log
            "BATCH_SETTLE_EVERY_SECONDS": "5",  # a local batch settles within seconds of its last callback
        }
    )
    for real, secret, stand_in, mount in (
        ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_BASE", TWILIO_MOUNT),
        ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", STRIPE_MOUNT),
    ):
        if not os.environ.get(real):
            environment.defaults[stand_in] = gateway_url + mount
        elif not os.environ.get(secret):
            log.warning(
                "%s is set but %s is not: the local default will not match the real service", real, secret
            )
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", *environment.unset):
        os.environ.pop(name, None)
    os.environ.update(environment.forced)
    for name, value in environment.defaults.items():
        os.environ.setdefault(name, value)
    return environment


def _port(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _check_free(port: int) -> None:
    """Moto's server thread would hang on a busy port instead of failing, so ask first."""
    with socket.socket() as probe:
        probe.bind((HOST, port))


# ---- demo data --------------------------------------------------------------------------------------


class SeedError(RuntimeError):
    pass


def _expect(response: requests.Response, status: int) -> None:
    if response.status_code != status:
        raise SeedError(f"{response.request.method} {response.url} → {response.status_code}: {response.text}")


def seed(base_url: str) -> None:
    """Create the demo accounts through the service's own support routes, as an operator would."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token.mint(ADMIN_ACCOUNT, 'admin')}"
    today = datetime.now(UTC).date().isoformat()
    for demo in DEMO_ACCOUNTS:
        body: dict[str, Any] = {
            "account_id": demo.account_id,
            "plan": demo.plan,
            "home_region": demo.home_region,
            "billing_anchor": demo.billing_anchor or today,
        }
        if demo.created_at:
            body["created_at"] = demo.created_at
        _expect(session.post(f"{base_url}/v1/admin/accounts", json=body, timeout=30), 201)
    _expect(
        session.post(
            f"{base_url}/v1/admin/accounts/demo-growth/adjustments",
            json={"pool": "purchased:AU", "credits": 200, "reason": "local demo: mixed funding"},
            headers={"Idempotency-Key": "seed-demo-growth-au"},
            timeout=30,
        ),
        200,
    )


def dynamo_counters(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """GET /__local/dynamo: the DynamoDB stand-in's request counters by caller (local/dynamo_fidelity.py)."""
    body = json.dumps({"fidelity": dynamo_fidelity.current().active, "counters": dynamo_fidelity.counters()})
    return Response(body, 200, content_type="application/json")(environ, start_response)


def demo_tokens(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """GET /__local/demo-tokens: the dashboard's sign-in picker in local mode. Never an admin token."""
    if environ.get("REQUEST_METHOD") != "GET":
        return Response("GET only", 405, {"Allow": "GET"})(environ, start_response)
    accounts = [
        {"account_id": d.account_id, "plan": d.plan, "token": token.mint(d.account_id)} for d in DEMO_ACCOUNTS
    ]
    return Response(json.dumps(accounts), 200, content_type="application/json")(environ, start_response)


@dataclass
class Started:
    gateway_url: str
    moto_url: str
    environment: Environment
    mounts: dict[str, Any]
    timers: Timers | None
    concurrency: int
    outbox: OutboxPoller  # the events published so far: `outbox.published()` (for GET /__local/events)


def banner(run: Started) -> str:
    gateway_url = run.gateway_url
    if TWILIO_MOUNT in run.mounts:
        stand_in = gateway_url + TWILIO_MOUNT
        twilio = f"stand-in at {stand_in} (received messages: GET {stand_in}/messages)"
    else:
        twilio = "real Twilio (TWILIO_ACCOUNT_SID is set; its callbacks need PUBLIC_BASE_URL to reach this machine)"
    stripe_cards = ""
    if STRIPE_MOUNT in run.mounts:
        stand_in = gateway_url + STRIPE_MOUNT
        stripe = (
            f"stand-in at {stand_in} (checkout pages; webhooks sent: GET {stand_in}/events;\n"
            f"               subscriptions: POST {stand_in}/subscriptions, see local/stripe_billing.py)"
        )
        cards = stripe_standin.describe(run.mounts[STRIPE_MOUNT].cards)
        stripe_cards = f"\nStripe stand-in test cards (LOCAL_STRIPE_CARDS overrides the choice):\n{cards}\n"
    elif os.environ.get("STRIPE_SECRET_KEY"):
        stripe = "real Stripe, test mode (STRIPE_SECRET_KEY is set)"
    else:
        stripe = "no stand-in: pack checkout fails unless STRIPE_SECRET_KEY (test mode) is set"
    if run.timers is None:
        timed = "off (LOCAL_SCHEDULES=off)"
    else:
        timed = ", ".join(f"{s.function} {s.expression} every {i:g} s" for s, i in run.timers.plan) or "none"
    absent = ", ".join(f"{ref} ({name} unset)" for name, ref in run.environment.unset.items()) or "nothing"
    fidelity = dynamo_fidelity.current()
    if fidelity.active:
        dynamo = (
            f"request latency, TransactionConflict, {fidelity.partition_wcu:g} WCU/s and "
            f"{fidelity.partition_rcu:g} RCU/s per partition (LOCAL_DYNAMO_FIDELITY=off removes them)"
        )
    else:
        dynamo = "off (LOCAL_DYNAMO_FIDELITY=off): moto answers at once, never a conflict or a throttle"
    tokens = [f"  {d.account_id:<16} {d.note}\n    {token.mint(d.account_id)}" for d in DEMO_ACCOUNTS]
    tokens.append(
        f"  {ADMIN_ACCOUNT + ' (admin)':<16} support routes\n    {token.mint(ADMIN_ACCOUNT, 'admin')}"
    )
    body = json.dumps(
        {"to": SAMPLE_NUMBER, "body": "Thanks for visiting! Leave us a review: https://example.com/r/1"}
    )
    return f"""
SMS credits service: local mode
  gateway      {gateway_url}  (routes and JWT authorizer from template.yaml)
  docs         {gateway_url}/v1/docs   OpenAPI {gateway_url}/v1/openapi.json   dashboard {gateway_url}/dashboard
  DynamoDB     {run.moto_url}  (moto server; tables from template.yaml)
  as on AWS    {dynamo}
  functions    worker processes, one request at a time each, up to {run.concurrency} per function
               (LOCAL_FUNCTION_CONCURRENCY); pids: GET {gateway_url}/__local/workers
  DynamoDB use GET {gateway_url}/__local/dynamo: requests, conflicts and throttles by function
  Twilio       {twilio}
  Stripe       {stripe}
  schedules    {timed}
  not emulated {absent}: the service takes its local path
  ledger check make check-ledger [ACCOUNT=<id>]
  clock        GET {gateway_url}/__local/clock; make clock DAYS=31 moves it on and runs the schedules
  events       GET {gateway_url}/__local/events[?detail_type=...&account_id=...]

Twilio stand-in recipients:
{describe()}
{stripe_cards}
Demo accounts, with tokens valid 24 h (HS256, LOCAL_JWT_SECRET):
{chr(10).join(tokens)}
Mint more: make token ACCOUNT=<id> [SCOPE=admin]; the SaaS backend's token: make token SCOPE=service
(it names the account in X-Account-Id)

Try it:
  TOKEN={token.mint(DEMO_ACCOUNTS[0].account_id)}
  curl -s {gateway_url}/v1/messages/quote -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{body}'
  curl -s {gateway_url}/v1/messages -H "Authorization: Bearer $TOKEN" \\
       -H "Idempotency-Key: $(python3 -c 'import uuid; print(uuid.uuid4())')" \\
       -H 'Content-Type: application/json' -d '{body}'
  curl -s {gateway_url}/v1/balance -H "Authorization: Bearer $TOKEN"

Ctrl-C stops it.
local mode ready"""


# ---- the run ----------------------------------------------------------------------------------------


def _configure_logging() -> None:
    # Only our own loggers: the functions' Powertools logger already writes its JSON lines to stdout.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    ours = logging.getLogger("local")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    for noisy in ("werkzeug", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_known_warnings()


def start(running: contextlib.ExitStack) -> Started:
    """Start everything, registering each part's stop on `running` as soon as it runs."""
    port, moto_port = _port("PORT", 3000), _port("MOTO_PORT", 0)
    gateway_url = f"http://{HOST}:{port}"
    if moto_port:
        _check_free(moto_port)
    patch_moto()  # before the server starts: the backend it serves is this process's
    moto = ThreadedMotoServer(ip_address=HOST, port=moto_port, verbose=False)
    moto.start()
    running.callback(moto.stop)
    moto_url = "http://{}:{}".format(*moto.get_host_and_port())
    sqs = sqs_client(moto_url)
    queues = create_queues(sqs)
    environment = configure_environment(gateway_url, moto_url, queues)
    gateway = Gateway()
    running.callback(gateway.workers.stop)
    # The seed's function pays its cold start while the tables are made, not after.
    seeding = gateway.routes.match("POST", "/v1/admin/accounts")
    warming = threading.Thread(target=gateway.workers.pools[seeding.route.function].warm) if seeding else None
    if warming is not None:
        warming.start()
    tables = moto_client(moto_url)
    create_tables(tables)
    outbox = OutboxPoller(tables, environment.forced.get("TABLE_NAME", "CreditsTable"))
    outbox.start()
    running.callback(outbox.stop)
    dynamo_fidelity.configure(dynamo_fidelity.Fidelity.from_environment(default_on=True))

    clock = LocalClock(Path(os.environ["LOCAL_CLOCK_FILE"]))
    running.callback(clock.path.unlink, missing_ok=True)
    mounts: dict[str, Any] = {
        "/__local/demo-tokens": demo_tokens,
        "/__local/workers": gateway.workers_app,
        "/__local/clock": ClockApp(clock, schedules(), gateway.invoke),
        "/__local/events": EventsApp(outbox.events),
        "/__local/dynamo": dynamo_counters,
    }
    if "TWILIO_API_BASE" in os.environ:
        delay = float(os.environ.get("LOCAL_TWILIO_CALLBACK_DELAY") or 0.3)
        mounts[TWILIO_MOUNT] = TwilioStandIn(os.environ["TWILIO_AUTH_TOKEN"], delay)
    if "STRIPE_API_BASE" in os.environ:
        stripe = stripe_standin.from_environment(gateway_url + STRIPE_MOUNT)
        mounts[STRIPE_MOUNT] = stripe
        mounts[STRIPE_MOUNT + "/subscriptions"] = StripeBilling(stripe, clock.now)
    server = make_server(HOST, port, DispatcherMiddleware(gateway, mounts), threaded=True)
    threading.Thread(target=server.serve_forever, name="gateway", daemon=True).start()
    running.callback(server.shutdown)

    if warming is not None:
        warming.join()
    seed(gateway_url)
    pollers = Pollers(event_sources(), queues, gateway.invoke, sqs)
    pollers.start()
    running.callback(pollers.stop)
    timers = None
    if os.environ.get("LOCAL_SCHEDULES", "").lower() != "off":
        timers = Timers(schedules(), gateway.invoke, float(os.environ.get("LOCAL_SCHEDULE_SCALE") or 1.0))
        timers.start()
        running.callback(timers.stop)

    path = run_file()
    path.write_text(json.dumps({"pid": os.getpid(), "gateway": gateway_url, "moto": moto_url}) + "\n")
    running.callback(path.unlink, missing_ok=True)
    return Started(gateway_url, moto_url, environment, mounts, timers, gateway.workers.limit, outbox)


def main() -> int:
    _configure_logging()
    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with contextlib.ExitStack() as running:
        try:
            started = start(running)
        except (OSError, SeedError, ValueError) as failure:
            log.error("local mode could not start: %s", failure)
            return 1
        print(banner(started), flush=True)
        while not stop.wait(0.2):
            pass
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    # Everything has stopped. Tearing down the interpreter (moto's and cfn-lint's object graphs) would take
    # seconds more for nothing, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
