"""The README's "Try it" block, run as printed (bash, make, curl, python3) against a local mode of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_mode import LocalMode, start, stop

ROOT = Path(__file__).resolve().parents[2]
PRINTED_URL = "http://127.0.0.1:3000"
pytestmark = pytest.mark.blackbox


def try_it_block() -> list[str]:
    """The command lines of the README's first ```sh block under "## Try it"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README.md has no ```sh block under ## Try it"
    return [line for line in match.group(1).splitlines() if line.strip()]


@pytest.fixture
def own_local_mode(tmp_path: Path) -> Iterator[LocalMode]:
    """A local mode of its own: the block sends from and changes demo accounts other tests read."""
    mode = start(tmp_path)
    try:
        yield mode
    finally:
        assert stop(mode, timeout=20) == 0


def test_every_readme_command_runs_as_printed(own_local_mode: LocalMode, tmp_path: Path) -> None:
    lines = try_it_block()
    curls = [line for line in lines if line.startswith("curl ")]
    assert len(curls) >= 5 and any("X-Account-Id" in line for line in curls)
    assert all(PRINTED_URL in line for line in curls)
    # Only the port differs from what a reader types: this local mode listens on a free one.
    script = "set -euo pipefail\n" + "".join(
        line.replace(PRINTED_URL, own_local_mode.base_url)
        + ("\necho\n" if line.startswith("curl ") else "\n")
        for line in lines
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOCAL_JWT")}
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(answers) == len(curls)
    for line, answer in zip(curls, answers, strict=True):
        assert "error" not in answer, (line, answer)
    quote, sent, balance, service_balance, page, patched = answers
    assert (quote["segments"], quote["credits"]) == (1, 1)
    assert sent["status"] in {"sent", "delivered"} and sent["credits"] == 1
    assert balance["account_id"] == "demo-starter" and balance["included"]["available"] == 49
    assert service_balance["account_id"] == "demo-growth"
    assert "demo-starter" in [account["account_id"] for account in page["accounts"]]
    assert patched["low_balance_threshold"] == 10
