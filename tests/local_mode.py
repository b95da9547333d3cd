"""Local mode (`python -m local.run`) as a subprocess on free ports: start it, wait until it answers, stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
# Variables that would make local mode reach real services or change its schedules.
STRIPPED = ("TWILIO_ACCOUNT_SID", "STRIPE_SECRET_KEY", "PUBLIC_BASE_URL", "LOCAL_SCHEDULES")
DEFAULTS = {
    "LOCAL_SCHEDULE_SCALE": "60",  # the 5-minute sweeper runs every 5 s
    "SWEEP_GRACE_SECONDS": "60",
    "LOCAL_TWILIO_CALLBACK_DELAY": "0.1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalMode:
    base_url: str
    log: Path
    run_file: Path
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def twilio_messages(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.base_url}/__local/twilio/messages", timeout=10)
        answer.raise_for_status()
        return list(answer.json()["messages"])


def start(workdir: Path, *, timeout: float = START_TIMEOUT, **env_overrides: str) -> LocalMode:
    """Start local mode with its log and run file in `workdir`; returns once it is ready and answering.

    Raises RuntimeError (with the log's tail) if it exits or is not ready within `timeout` seconds.
    """
    port = free_port()
    run_file = workdir / "local-run.json"
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED}
    env.update(
        PORT=str(port),
        MOTO_PORT=str(free_port()),
        LOCAL_RUN_FILE=str(run_file),
        PYTHONUNBUFFERED="1",
        **DEFAULTS,
    )
    env.update(env_overrides)
    log = workdir / "local-run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.run"], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    mode = LocalMode(f"http://{HOST}:{port}", log, run_file, process)
    try:
        _wait_until_ready(mode, timeout)
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    return mode


def _wait_until_ready(mode: LocalMode, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mode.process.poll() is not None:
            raise RuntimeError(f"local mode exited with {mode.process.returncode}:\n{mode.output()[-4000:]}")
        if "local mode ready" in mode.output():
            try:
                if requests.get(f"{mode.base_url}/v1/openapi.json", timeout=5).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or still busy starting
                pass
        time.sleep(0.2)
    raise RuntimeError(f"local mode not ready after {timeout} s:\n{mode.output()[-4000:]}")


def stop(mode: LocalMode, timeout: float = 30) -> int:
    """Ctrl-C (SIGINT), as a user would; killed if still running after `timeout` s. Returns the exit code."""
    if mode.process.poll() is None:
        mode.process.send_signal(signal.SIGINT)
    try:
        return mode.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        mode.process.kill()
        return mode.process.wait()
