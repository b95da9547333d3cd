"""Lambda-like execution environments: per function, a pool of worker processes, each serving one invocation
at a time with its own warm module state, scaled out on demand.

What Lambda does and this copies (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html,
.../lambda-concurrency.html):

- An environment handles one invocation at a time; a request that finds every environment busy gets a new
  one, whose first invocation pays the init (the module import: a cold start, logged with its duration).
  Locally one environment per function initialises at a time (parallel inits on a laptop's two cores only
  slow each other down); a request arriving meanwhile takes the first environment that is free.
- Environments stay warm between invocations: module-level state (clients, caches) persists per process.
- A function's `ReservedConcurrentExecutions` caps its environments; beyond it Lambda throttles the
  invocation (429 TooManyRequestsException), which API Gateway answers as a 500 "Internal server error"
  (https://repost.aws/knowledge-center/api-gateway-internal-server-error). Without a reservation Lambda
  scales to the account's 1,000; locally LOCAL_FUNCTION_CONCURRENCY (default 8) caps each pool and a
  request beyond it waits for a free worker instead.
- An invocation that runs past the function's Timeout is stopped (the worker is killed) and fails.
- A worker that dies mid-invocation (killed: `GET /__local/workers` gives the pids) fails that invocation
  as Lambda does when its runtime exits; the pool replaces it on the next request.

Each worker is a fresh interpreter (`python -m local.workers`, never a fork of the threaded main process),
given the functions' environment; its invocations go through a socket pair as pickled messages. Its
cold start is a real one: interpreter start and every import, as on Lambda (bench/coldstart.py measures
Lambda's own). multiprocessing's spawn and forkserver are not used because each of their children first
re-imports the main module (local.run, with moto and its server): seconds per worker.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

log = logging.getLogger("local.workers")

DEFAULT_CONCURRENCY = 8
LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "us-east-1"
ROOT = Path(__file__).resolve().parent.parent


def quiet_known_warnings() -> None:
    """Warnings that would repeat on every request in local mode and say nothing new."""
    from jwt.warnings import InsecureKeyLengthWarning

    # The product fixes the local default JWT secret at 16 bytes; PyJWT warns on every verify.
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    # With metrics disabled Powertools still warns, once per invocation, that it has none to publish.
    warnings.filterwarnings("ignore", message="No application metrics to publish")


@dataclass(frozen=True)
class FunctionSpec:
    """What a worker needs to load and run one function of the template."""

    name: str
    path: Path
    module_name: str
    attribute: str
    timeout: int
    memory: int
    reserved: int | None  # ReservedConcurrentExecutions, when the template sets a plain number

    @classmethod
    def from_properties(cls, name: str, properties: Mapping[str, Any], root: Path) -> FunctionSpec:
        code_uri = Path(str(properties["CodeUri"]))
        module, attribute = str(properties["Handler"]).rsplit(".", 1)
        reserved = properties.get("ReservedConcurrentExecutions")
        return cls(
            name=name,
            path=root / code_uri / (module.replace(".", "/") + ".py"),
            # Every function's module is called `app`: a unique name keeps them apart in sys.modules.
            module_name=f"fn_{code_uri.name}_{module.replace('.', '_')}",
            attribute=attribute,
            timeout=int(properties.get("Timeout", 3)),
            memory=int(properties.get("MemorySize", 128)),
            reserved=reserved if isinstance(reserved, int) else None,
        )


class LambdaContext:
    """What Lambda passes as `context`, with a clock that runs down from the function's Timeout."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = spec.memory
        self.invoked_function_arn = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{spec.name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class FunctionError(Exception):
    """The function raised, timed out, was throttled or its worker died: API Gateway answers 500."""


class Throttled(FunctionError):
    pass


# ---- the worker process -----------------------------------------------------------------------------


def _serve(spec: FunctionSpec, connection: Connection) -> None:
    """A worker's life: init (import the function), then one invocation at a time until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process; it stops the workers
    quiet_known_warnings()
    import importlib.util

    started = time.monotonic()
    loader = importlib.util.spec_from_file_location(spec.module_name, spec.path)
    if loader is None or loader.loader is None:
        raise RuntimeError(f"cannot load {spec.path}")
    module = importlib.util.module_from_spec(loader)
    sys.modules[spec.module_name] = module
    loader.loader.exec_module(module)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(module, spec.attribute)
    connection.send(("ready", (time.monotonic() - started) * 1000))
    while True:
        try:
            event = connection.recv()
        except (EOFError, OSError):
            return  # the gateway went away
        try:
            result = handler(event, LambdaContext(spec))
        except Exception:
            connection.send(("error", traceback.format_exc()))
        else:
            connection.send(("ok", result))


# ---- the gateway's side -----------------------------------------------------------------------------


class Worker:
    """One execution environment: a process and the pipe its invocations go through."""

    def __init__(self, spec: FunctionSpec, environment: Mapping[str, str]) -> None:
        self.spec = spec
        ours, theirs = socket.socketpair()
        started = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.workers",
                str(theirs.fileno()),
                json.dumps(asdict(spec), default=str),
            ],
            cwd=ROOT,
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        self.connection = Connection(ours.detach())
        self.invocations = 0
        self.serving: str | None = None  # what it is answering now (for GET /__local/workers)
        kind, init_ms = self._receive(timeout=60)
        if kind != "ready":
            raise FunctionError(f"{spec.name} failed its init:\n{init_ms}")
        log.info(
            "cold start: %s worker %s (init %.0f ms, %.0f ms with the interpreter's start)",
            spec.name,
            self.pid,
            init_ms,
            (time.monotonic() - started) * 1000,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, event: dict[str, Any], label: str) -> Any:
        self.serving = label
        self.invocations += 1
        try:
            self.connection.send(event)
            kind, value = self._receive(timeout=self.spec.timeout)
        finally:
            self.serving = None
        if kind == "error":
            raise FunctionError(f"{self.spec.name} raised:\n{value}")
        return value

    def _receive(self, timeout: float) -> tuple[str, Any]:
        try:
            if self.connection.poll(timeout):
                kind, value = self.connection.recv()
                return str(kind), value
        except (EOFError, OSError):
            raise FunctionError(
                f"{self.spec.name} worker {self.pid} exited (exit code {self._exit_code()})"
            ) from None
        self.stop()
        raise FunctionError(
            f"{self.spec.name}: task timed out after {timeout:g} seconds (worker {self.pid} stopped)"
        )

    def _exit_code(self) -> int | None:
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self._exit_code()
        self.connection.close()


class Pool:
    """The environments of one function: reuse an idle one, else start one (up to the cap), else wait."""

    def __init__(self, spec: FunctionSpec, limit: int, start: Callable[[FunctionSpec], Worker]) -> None:
        self.spec = spec
        self.limit = min(limit, spec.reserved) if spec.reserved is not None else limit
        self._start = start
        self._idle: list[Worker] = []
        self.workers: list[Worker] = []
        self._starting = 0
        self._changed = threading.Condition()

    def invoke(self, event: dict[str, Any], label: str) -> Any:
        worker = self._acquire()
        try:
            result = worker.invoke(event, label)
        except FunctionError:
            if not worker.alive:
                self._discard(worker)
            else:
                self._release(worker)
            raise
        self._release(worker)
        return result

    def _acquire(self) -> Worker:
        with self._changed:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        return worker
                    self._forget(worker)  # died while idle (killed): replace it
                # One cold start at a time per function: on a laptop's cores, parallel inits only slow
                # each other down; a request arriving meanwhile takes the first worker that is free.
                if not self._starting and len(self.workers) < self.limit:
                    self._starting += 1
                    break
                at_reservation = self.spec.reserved is not None and self.limit >= self.spec.reserved
                if at_reservation and len(self.workers) + self._starting >= self.limit:
                    raise Throttled(
                        f"{self.spec.name}: all {self.spec.reserved} reserved concurrent executions are busy "
                        "(Lambda throttles with 429; API Gateway answers 500)"
                    )
                self._changed.wait()
        try:
            worker = self._start(self.spec)
        except BaseException:
            with self._changed:
                self._starting -= 1
                self._changed.notify()
            raise
        with self._changed:
            self._starting -= 1
            self.workers.append(worker)
            self._changed.notify()  # a waiting request may start the next one
        return worker

    def warm(self) -> None:
        """Have one idle worker ready (start it if there is none)."""
        self._release(self._acquire())

    def fill(self, count: int) -> int:
        """Start workers, one at a time, until the pool holds `count` (at most its limit), so that a
        benchmark's timed run meets no cold start; returns how many it holds."""
        while True:
            with self._changed:
                if len(self.workers) + self._starting >= min(count, self.limit):
                    return len(self.workers)
                self._starting += 1
            try:
                worker = self._start(self.spec)
            finally:
                with self._changed:
                    self._starting -= 1
                    self._changed.notify()
            with self._changed:
                self.workers.append(worker)
                self._idle.append(worker)
                self._changed.notify()

    def _release(self, worker: Worker) -> None:
        with self._changed:
            self._idle.append(worker)
            self._changed.notify()

    def _discard(self, worker: Worker) -> None:
        worker.stop()
        with self._changed:
            self._forget(worker)
            self._changed.notify()

    def _forget(self, worker: Worker) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        log.warning(
            "%s worker %s is gone (exit code %s)", self.spec.name, worker.pid, worker.process.returncode
        )

    def describe(self) -> list[dict[str, Any]]:
        with self._changed:
            return [
                {
                    "function": self.spec.name,
                    "pid": worker.pid,
                    "alive": worker.alive,
                    "busy": worker.serving is not None,
                    "serving": worker.serving,
                    "invocations": worker.invocations,
                }
                for worker in self.workers
            ]

    def stop(self) -> None:
        with self._changed:
            workers, self.workers, self._idle = list(self.workers), [], []
        for worker in workers:
            worker.stop()


class Workers:
    """Every function's pool; a worker starts when a request finds none idle (none before the first)."""

    def __init__(self, specs: Mapping[str, FunctionSpec], limit: int | None = None) -> None:
        self.limit = limit or int(os.environ.get("LOCAL_FUNCTION_CONCURRENCY") or DEFAULT_CONCURRENCY)
        self.pools = {name: Pool(spec, self.limit, self._new_worker) for name, spec in specs.items()}

    @staticmethod
    def _new_worker(spec: FunctionSpec) -> Worker:
        # The functions' environment as local.run configured it; the SDK's User-Agent names the function, so
        # the DynamoDB stand-in can count each function's requests (GET /__local/dynamo).
        return Worker(spec, {**os.environ, "AWS_SDK_UA_APP_ID": spec.name})

    def invoke(self, function: str, event: dict[str, Any], label: str = "") -> Any:
        return self.pools[function].invoke(event, label or function)

    def describe(self) -> list[dict[str, Any]]:
        return [entry for pool in self.pools.values() for entry in pool.describe()]

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.stop()


def main(argv: list[str]) -> None:
    """`python -m local.workers <socket fd> <spec JSON>`: what Worker starts."""
    fields = json.loads(argv[1])
    fields["path"] = Path(fields["path"])
    _serve(FunctionSpec(**fields), Connection(int(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
