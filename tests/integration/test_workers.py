"""Local mode's Lambda-like execution environments (local.workers), with small functions of the tests' own."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from local.workers import FunctionError, FunctionSpec, Pool, Throttled, Worker, Workers

APP = """
import os
import time

invocations = 0  # module state: survives between invocations in one environment, as on Lambda


def handler(event, context):
    global invocations
    invocations += 1
    if event.get("raise"):
        raise ValueError("asked to fail")
    time.sleep(event.get("sleep", 0))
    return {
        "pid": os.getpid(),
        "invocations": invocations,
        "variable": os.environ.get("WORKER_TEST_VARIABLE"),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function": context.function_name,
    }
"""


@pytest.fixture
def spec(tmp_path: Path) -> FunctionSpec:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(textwrap.dedent(APP))
    properties = {"CodeUri": "fn/", "Handler": "app.handler", "Timeout": 2, "MemorySize": 256}
    return FunctionSpec.from_properties("TestFunction", properties, tmp_path)


@pytest.fixture
def workers(spec: FunctionSpec, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    monkeypatch.setenv("WORKER_TEST_VARIABLE", "from the gateway")
    pool = Workers({spec.name: spec}, limit=3)
    yield pool
    pool.stop()


def invoke_all(workers: Workers, events: list[dict[str, Any]]) -> list[Any]:
    """Invoke concurrently, one thread per event; each result, or the FunctionError it raised."""
    results: list[Any] = [None] * len(events)

    def one(index: int) -> None:
        try:
            results[index] = workers.invoke("TestFunction", events[index])
        except FunctionError as error:
            results[index] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_a_worker_keeps_its_state_and_sees_the_gateway_s_environment(workers: Workers):
    first = workers.invoke("TestFunction", {})
    second = workers.invoke("TestFunction", {})

    assert first["pid"] == second["pid"] != os.getpid()
    assert (first["invocations"], second["invocations"]) == (1, 2)
    assert first["variable"] == "from the gateway"
    assert first["function"] == "TestFunction"
    assert 0 < first["remaining_ms"] <= 2000


def test_concurrent_invocations_run_in_separate_workers_at_once(workers: Workers):
    began = time.monotonic()
    results = invoke_all(workers, [{"sleep": 1.5}] * 3)  # within the 2 s Timeout
    elapsed = time.monotonic() - began

    assert len({result["pid"] for result in results}) == 3
    assert all(result["invocations"] == 1 for result in results)
    assert elapsed < 2 * 1.5  # one after another would be 4.5 s of sleeping alone
    assert len(workers.describe()) == 3


def test_beyond_the_limit_a_request_waits_for_a_free_worker(workers: Workers):
    results = invoke_all(workers, [{"sleep": 1.5}] * 5)  # longer than a cold start, even a slow one

    assert all(isinstance(result, dict) for result in results)
    assert len({result["pid"] for result in results}) == 3  # the limit
    assert sorted(result["invocations"] for result in results) == [1, 1, 1, 2, 2]


def test_a_raising_function_fails_the_invocation_and_the_worker_stays(workers: Workers):
    with pytest.raises(FunctionError, match="ValueError: asked to fail"):
        workers.invoke("TestFunction", {"raise": True})
    after = workers.invoke("TestFunction", {})

    assert after["invocations"] == 2  # the same environment, warm


def test_an_invocation_past_the_timeout_is_stopped_and_the_worker_replaced(workers: Workers):
    first = workers.invoke("TestFunction", {})
    with pytest.raises(FunctionError, match="timed out after 2 seconds"):
        workers.invoke("TestFunction", {"sleep": 5})
    after = workers.invoke("TestFunction", {})

    assert after["pid"] != first["pid"]
    assert after["invocations"] == 1  # a cold one


def test_a_worker_killed_mid_invocation_fails_it_and_is_replaced(workers: Workers):
    results: list[Any] = []
    running = threading.Thread(target=lambda: results.extend(invoke_all(workers, [{"sleep": 1.5}])))
    running.start()
    deadline = time.monotonic() + 20
    while not any(entry["busy"] for entry in workers.describe()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    busy = next(entry for entry in workers.describe() if entry["busy"])

    os.kill(busy["pid"], signal.SIGKILL)
    running.join(timeout=30)
    after = workers.invoke("TestFunction", {})

    assert isinstance(results[0], FunctionError)
    assert f"worker {busy['pid']} exited" in str(results[0])
    assert after["pid"] != busy["pid"]
    assert [entry["pid"] for entry in workers.describe()] == [after["pid"]]


class FakeWorker:
    """Stands in for a Worker in the pool's bookkeeping tests (no process)."""

    def __init__(self, number: int) -> None:
        self.pid = number
        self.alive = True
        self.serving: str | None = None
        self.invocations = 0
        self.release = threading.Event()

    def invoke(self, event: dict[str, Any], label: str) -> Any:
        self.serving = label
        self.release.wait(10)
        self.serving = None
        return self.pid

    def stop(self) -> None:
        self.alive = False


def test_a_reserved_concurrency_throttles_beyond_it(spec: FunctionSpec):
    started: list[FakeWorker] = []

    def start(_: FunctionSpec) -> Any:
        started.append(FakeWorker(len(started)))
        return started[-1]

    pool = Pool(replace(spec, reserved=1), 8, start)
    busy = threading.Thread(target=pool.invoke, args=({}, "first"))
    busy.start()
    while not started or started[0].serving is None:
        time.sleep(0.01)

    with pytest.raises(Throttled, match="reserved"):
        pool.invoke({}, "second")
    started[0].release.set()
    busy.join(timeout=10)

    assert pool.invoke({}, "third") == 0  # the one environment again
    assert len(started) == 1


def test_a_pool_filled_ahead_serves_that_many_at_once_without_a_cold_start(spec: FunctionSpec):
    started: list[FakeWorker] = []

    def start(_: FunctionSpec) -> Any:
        started.append(FakeWorker(len(started)))
        return started[-1]

    pool = Pool(spec, 3, start)
    assert pool.fill(5) == 3  # never beyond the pool's limit
    assert pool.fill(2) == 3 and len(started) == 3  # already there: nothing more started
    calls = [threading.Thread(target=pool.invoke, args=({}, f"call {n}")) for n in range(3)]
    for call in calls:
        call.start()
    deadline = time.monotonic() + 10
    while any(worker.serving is None for worker in started) and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = [worker.serving is not None for worker in started]
    for worker in started:
        worker.release.set()
    for call in calls:
        call.join(timeout=10)

    assert busy == [True, True, True] and len(started) == 3  # three at once, none started for them


def test_worker_protocol_reports_an_init_failure(tmp_path: Path):
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("raise RuntimeError('broken at import')\n")
    broken = FunctionSpec.from_properties("Broken", {"CodeUri": "fn/", "Handler": "app.handler"}, tmp_path)

    with pytest.raises(FunctionError, match="exited"):
        Worker(broken, os.environ)
