"""Cold start: a fresh interpreter importing each function's handler module, beside one importing boto3."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

from bench.common import CORE_LAYER, ROOT, Row, Section, announce, median

# Targets from issues 8 and 19: the two busiest request functions within 1.5× of a bare boto3 import, every
# other function within 2×.
TARGETS = {
    "send": 1.5,
    "account_api": 1.5,
    "checkout": 2.0,
    "stripe_webhook": 2.0,
    "twilio_status": 2.0,
    "refresh": 2.0,
    "refresh_worker": 2.0,
    "sweeper": 2.0,
}
FUNCTIONS = tuple(TARGETS)

_LOAD = """
import importlib.util, sys
sys.path.insert(0, {layer!r})
spec = importlib.util.spec_from_file_location("app", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


CLOSING = """\
- **Cold start.** What is left after botocore (0.9× of the baseline by itself), pydantic and Powertools' logger
  and metrics is our own modules' import. The domain's values (Account, Hold, the ledger's Movement and Change
  records, auto-recharge's state, orders) are NamedTuples, about a fifth of a frozen dataclass each to define;
  the ports are imported as types only; the DynamoDB reader, Twilio and Stripe load with the first request that
  uses them. docs/performance.md ("Cold start: what each choice saved") has the breakdown."""


def _environment() -> dict[str, str]:
    # What Lambda sets, so module-level Powertools objects build as they would there; no endpoint is called.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        TABLE_NAME="CreditsTable",
        POWERTOOLS_SERVICE_NAME="sms-credits",
        POWERTOOLS_METRICS_NAMESPACE="SmsCredits",
        PYDANTIC_DISABLE_PLUGINS="__all__",  # template.yaml's Globals set it too
        PYTHONDONTWRITEBYTECODE="",  # bytecode caches are warm on Lambda too (sam build compiles them)
    )
    return env


def _time(codes: dict[str, str], runs: int) -> dict[str, tuple[float, float]]:
    """Median wall time and median CPU time (user + system) of `runs` fresh interpreters per snippet
    (interpreter start-up included), taken in rounds of one of each so that a busy machine slows baseline and
    functions alike. CPU time shows what a busy machine's queueing adds to the wall time."""
    env = _environment()
    walls: dict[str, list[float]] = {name: [] for name in codes}
    cpus: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(runs + 1):  # the first round only warms the .pyc caches
        for name, code in codes.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
            walls[name].append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {name: (median(walls[name][1:]), median(cpus[name][1:])) for name in codes}


def run(quick: bool) -> Section:
    announce("cold start")
    runs = 3 if quick else 7
    section = Section(
        "Cold start",
        f"Median wall time of {runs} fresh `python -c` processes that load `functions/<name>/app.py` by path "
        "with `layers/core` on `sys.path` (as `tests/functions.load_function` and Lambda do), divided by the "
        f"median of {runs} fresh processes doing only `import boto3`, taken in rounds of one process each "
        "(boto3, then every function) so that a busy machine slows baseline and functions alike. "
        "Both include interpreter start-up; a first round warms the bytecode caches and is not counted. "
        "The ratio of the median CPU times (user + system) is shown beside: on a busy machine it moves less.",
    )
    section.closing = CLOSING
    codes = {"boto3": "import boto3"}
    for name in FUNCTIONS:
        codes[name] = _LOAD.format(layer=str(CORE_LAYER), path=str(ROOT / "functions" / name / "app.py"))
    medians = _time(codes, runs)
    baseline, baseline_cpu = medians.pop("boto3")
    print(f"import boto3: {baseline:.3f} s, CPU {baseline_cpu:.3f} s (median of {runs})")
    for name, (seconds, cpu) in medians.items():
        ratio = seconds / baseline
        target = TARGETS.get(name)
        print(f"{name}: {seconds:.3f} s = {ratio:.2f}× boto3 (CPU {cpu / baseline_cpu:.2f}×)")
        section.rows.append(
            Row(
                f"cold start: {name}",
                f"{seconds:.3f} s",
                f"boto3 {baseline:.3f} s",
                f"{ratio:.2f}× (CPU {cpu / baseline_cpu:.2f}×)",
                f"≤ {target:g}×" if target else "—",
                ratio <= target if target else None,
            )
        )
        if target and ratio > target:
            section.notes.append(
                f"cold start of {name}: {ratio:.2f}× against ≤ {target:g}× — {ratio / target:.2f}× too slow "
                f"({seconds - target * baseline:.2f} s over)."
            )
    return section
