"""Cold start: a fresh interpreter importing each function's handler module, beside one importing boto3."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.common import CORE_LAYER, ROOT, Row, Section, announce, median

# Targets from issue 8: the request-path functions must stay close to a bare boto3 import.
TARGETS = {"send": 1.5, "account_api": 1.5, "checkout": 2.0, "stripe_webhook": 2.0}
FUNCTIONS = (*TARGETS, "twilio_status", "refresh", "refresh_worker", "sweeper")

_LOAD = """
import importlib.util, sys
sys.path.insert(0, {layer!r})
spec = importlib.util.spec_from_file_location("app", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


CLOSING = """\
- **Cold start.** By `python -X importtime`, a request function's import is boto3 (the baseline itself),
  Powertools' event handler (~0.4 s: its package imports the AppSync, Bedrock and VPC Lattice resolvers and
  asyncio, and `enable_validation=True` brings its OpenAPI models and pydantic), pydantic and our schemas,
  and Powertools' logger and metrics. No lazy import in our code takes the request functions under 1.5×
  boto3 while they import Powertools' resolver. What would: a slim resolver of our own over the payload 2.0
  event (our ~20 routes, bodies validated by our pydantic models directly), the OpenAPI document served as a
  file generated at build time instead of by Powertools' validation/OpenAPI on the hot path, and a plain
  JSON logger; a contained rewrite of `smscredits/api/app.py` and the routers' decorators, which would also
  bring the Stripe functions under 2×. Lambda SnapStart for Python is the alternative with no code change."""


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


def _time(codes: dict[str, str], runs: int) -> dict[str, float]:
    """Median wall time of `runs` fresh interpreters per snippet (interpreter start-up included), taken in
    rounds of one of each so that a busy machine slows baseline and functions alike."""
    env = _environment()
    times: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(runs + 1):  # the first round only warms the .pyc caches
        for name, code in codes.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
            times[name].append(time.perf_counter() - started)
    return {name: median(taken[1:]) for name, taken in times.items()}


def run(quick: bool) -> Section:
    announce("cold start")
    runs = 3 if quick else 7
    section = Section(
        "Cold start",
        f"Median wall time of {runs} fresh `python -c` processes that load `functions/<name>/app.py` by path "
        "with `layers/core` on `sys.path` (as `tests/functions.load_function` and Lambda do), divided by the "
        f"median of {runs} fresh processes doing only `import boto3`, taken in rounds of one process each "
        "(boto3, then every function) so that a busy machine slows baseline and functions alike. "
        "Both include interpreter start-up; a first round warms the bytecode caches and is not counted.",
    )
    section.closing = CLOSING
    codes = {"boto3": "import boto3"}
    for name in FUNCTIONS:
        codes[name] = _LOAD.format(layer=str(CORE_LAYER), path=str(ROOT / "functions" / name / "app.py"))
    medians = _time(codes, runs)
    baseline = medians.pop("boto3")
    print(f"import boto3: {baseline:.3f} s (median of {runs})")
    for name, seconds in medians.items():
        ratio = seconds / baseline
        target = TARGETS.get(name)
        print(f"{name}: {seconds:.3f} s = {ratio:.2f}× boto3")
        section.rows.append(
            Row(
                f"cold start: {name}",
                f"{seconds:.3f} s",
                f"boto3 {baseline:.3f} s",
                f"{ratio:.2f}×",
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
