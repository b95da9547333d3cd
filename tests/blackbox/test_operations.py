"""Operating local mode: the statement, the ledger check command, the schedules, the demo accounts."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Callable

import jwt
import pytest
import requests

from tests.blackbox.conftest import AU_NUMBER, ROOT, SCHEDULE_SCALE, Api, LocalMode, wait_for

pytestmark = pytest.mark.blackbox


def test_the_ledger_lists_every_movement_newest_first_and_as_csv(new_account: Callable[..., Api]) -> None:
    owner = new_account()
    message_ids = [owner.send(AU_NUMBER, f"Statement test {n}").json()["message_id"] for n in range(3)]

    page = owner.get("/v1/ledger").json()
    csv_answer = owner.get("/v1/ledger.csv")

    entries = page["entries"]
    assert page["next_cursor"] is None
    assert [e["kind"] for e in entries] == ["post", "hold"] * 3 + ["grant"]
    moved = [e["reference"].get("message_id") for e in entries if e["kind"] in ("hold", "post")]
    assert moved == [m for m in reversed(message_ids) for _ in ("post", "hold")]
    stamps = [e["created_at"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)
    assert [e["balance_after"] for e in entries if e["kind"] != "post"] == [47, 48, 49, 50]
    assert csv_answer.status_code == 200
    assert csv_answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_answer.text)))
    assert [r["entry_id"] for r in rows] == [e["entry_id"] for e in entries]


def test_the_ledger_pages_with_a_cursor(new_account: Callable[..., Api]) -> None:
    owner = new_account()
    for n in range(2):
        assert owner.send(AU_NUMBER, f"Paging test {n}").status_code == 202

    first = owner.get("/v1/ledger", params={"limit": 3}).json()
    rest = owner.get("/v1/ledger", params={"limit": 3, "cursor": first["next_cursor"]}).json()

    assert len(first["entries"]) == 3 and first["next_cursor"]
    assert len(rest["entries"]) == 2 and rest["next_cursor"] is None
    assert rest["entries"][-1]["kind"] == "grant"


def test_the_demo_accounts_are_seeded_and_offered_to_the_dashboard(admin: Api, local_mode: LocalMode) -> None:
    legacy = admin.get("/v1/admin/accounts/demo-legacy/balance").json()
    essentials = admin.get("/v1/admin/accounts/demo-essentials/balance").json()
    offered = requests.get(f"{local_mode.base_url}/__local/demo-tokens", timeout=10).json()

    assert (legacy["credit_model"], legacy["plan"]) == ("legacy", "starter")
    assert (essentials["credit_model"], essentials["included"]["available"]) == ("segment", 75)
    assert [a["account_id"] for a in offered] == [
        "demo-starter",
        "demo-essentials",
        "demo-growth",
        "demo-legacy",
    ]
    for account in offered:
        assert jwt.decode(account["token"], options={"verify_signature": False})["scope"] == ""
        assert Api(local_mode.base_url, account["token"]).balance()["account_id"] == account["account_id"]


def test_check_ledger_finds_every_account_sound(local_mode: LocalMode) -> None:
    env = {**os.environ, "LOCAL_RUN_FILE": str(local_mode.run_file)}
    env.pop("AWS_ENDPOINT_URL_DYNAMODB", None)

    result = subprocess.run(
        [sys.executable, "-m", "local.check_ledger"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo-starter:" in result.stdout and result.stdout.rstrip().endswith("ledger ok")


def test_the_sweeper_runs_on_its_timer_and_leaves_an_accepted_message_alone(
    new_account: Callable[..., Api], local_mode: LocalMode
) -> None:
    """+61491570159 gets no status callback. Twilio accepted it, so it was charged at once: the sweeper
    (every 300 s / SCHEDULE_SCALE here) only voids holds that never reached Twilio, and leaves it."""
    owner = new_account()
    sent = owner.send("+61491570159", "No callback will come")
    assert sent.status_code == 202
    runs = local_mode.output().count("SweeperFunction (rate(5 minutes)) ran")

    swept = wait_for(
        lambda: local_mode.output().count("SweeperFunction (rate(5 minutes)) ran") > runs,
        timeout=300 / SCHEDULE_SCALE + 5,
    )

    assert swept, local_mode.output()[-3000:]
    message = owner.get(f"/v1/messages/{sent.json()['message_id']}").json()
    assert (message["status"], message["billing"]) == ("sent", "charged")
    record = [m for m in local_mode.twilio_messages() if m["body"] == "No callback will come"]
    assert record and record[-1]["callbacks"] == []
