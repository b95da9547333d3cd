"""Fault injection for the reliability tests: a DynamoDB client proxy, crash points, the audit, the figures."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from smscredits import runtime
from smscredits.domain.audit import check_account
from smscredits.services import recharge
from tests.integration.conftest import service, service_ledger, twilio
from tests.integration.stripe_support import stripe_api

__all__ = ["service", "stripe_api", "twilio"]

WRITES = ("transact_write_items", "update_item", "put_item")
FAULTS = ("conflict", "provisioned", "throttling", "timeout_after", "timeout_before", "storm")

# Figures per test family, printed at the end of the run (docs/reliability.md quotes them).
FIGURES: dict[str, Counter[str]] = defaultdict(Counter)
OUTCOMES: list[tuple[str, str, str]] = []  # (family/path, step, outcome) for the crash table


class Crash(BaseException):
    """The process dies here: not an Exception, so no handler of the service can catch it."""


def fault_error(fault: str, operation: str) -> Exception:
    if fault == "conflict":
        if operation == "TransactWriteItems":
            response: dict[str, Any] = {
                "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
            }
        else:
            response = {"Error": {"Code": "TransactionConflictException", "Message": "conflict"}}
        return ClientError(response, operation)
    if fault in ("provisioned", "storm"):
        code = "ProvisionedThroughputExceededException"
        return ClientError({"Error": {"Code": code, "Message": "slow down"}}, operation)
    if fault == "throttling":
        return ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, operation)
    return ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")


class FaultyClient:
    """The real (moto) client, except that write number `at` (0-based, counting every write call) fails
    with `fault`; a `storm` fails every write from `at` on until `calm()`."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.fault: str | None = None
        self.at = -1
        self.writes = 0
        self.injected = 0

    def arm(self, fault: str, at: int) -> None:
        self.fault, self.at, self.writes, self.injected = fault, at, 0, 0

    def calm(self) -> None:
        self.fault = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in WRITES:
            return attr

        def write(**kwargs: Any) -> Any:
            index = self.writes
            self.writes += 1
            hit = self.fault is not None and (index == self.at if self.fault != "storm" else index >= self.at)
            if not hit:
                return attr(**kwargs)
            self.injected += 1
            operation = "".join(part.title() for part in name.split("_"))
            error = fault_error(str(self.fault), operation)
            if self.fault == "timeout_after":
                attr(**kwargs)  # the write lands; its answer is lost
            raise error

        return write


@pytest.fixture
def faulty(service: Any, dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> FaultyClient:
    """The functions' ledger on a FaultyClient over moto; no backoff sleeps, short recharge waits."""
    proxy = FaultyClient(dynamodb)
    runtime.use(
        runtime.container().replace(ledger=service_ledger(proxy, service, sleep=lambda seconds: None))
    )
    monkeypatch.setattr(recharge, "WAIT_SECONDS", 0.001)
    return proxy


def once(
    error: BaseException | Callable[[], BaseException], original: Callable[..., Any]
) -> Callable[..., Any]:
    """A stand-in for `original` that raises the first time it is called, then behaves as `original`."""
    state = {"fired": False}

    def step(*args: Any, **kwargs: Any) -> Any:
        if not state["fired"]:
            state["fired"] = True
            raise error if isinstance(error, BaseException) else error()
        return original(*args, **kwargs)

    return step


def audit(account_ids: Iterable[str]) -> dict[str, Any]:
    """Each account's pools and held credits; fails on any ledger problem (check_account)."""
    state: dict[str, Any] = {}
    for account_id in account_ids:
        account, entries, holds = runtime.container().statements.partition(account_id)
        problems = check_account(account, entries, holds)
        assert not problems, problems
        assert all(value >= 0 for value in account.pools.values()) and account.held >= 0
        state[account_id] = {"pools": dict(account.pools), "held": account.held}
    return state


def credits_in(state: dict[str, Any]) -> int:
    return sum(sum(s["pools"].values()) + s["held"] for s in state.values())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES and not OUTCOMES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("reliability figures")
    for family, counts in sorted(FIGURES.items()):
        write(f"{family}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if OUTCOMES:
        write("crash outcomes:")
        for path, step, outcome in OUTCOMES:
            write(f"  {path:10} {step:40} {outcome}")
