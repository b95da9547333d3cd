"""A Stripe Billing subscription through local mode, over HTTP only: created (it creates the account) → upgraded →
renewed (invoice.paid, with the local clock moved past the billing date) → canceled → period end, with the ledger
checked after every step. Local mode runs on its own here: moving its clock must not touch other tests' accounts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.token import mint
from tests.blackbox.conftest import ROOT, Api, wait_for
from tests.local_mode import LocalMode, start, stop

pytestmark = pytest.mark.blackbox

ACCOUNT = "life-co"


@pytest.fixture(scope="module")
def billing_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    mode = start(tmp_path_factory.mktemp("billing-mode"), LOCAL_SCHEDULES="off")
    try:
        yield mode
    finally:
        assert stop(mode, timeout=20) == 0, mode.output()[-4000:]


def ledger_ok(mode: LocalMode, account_id: str = ACCOUNT) -> None:
    """`make check-ledger ACCOUNT=…` against this local mode: pools = the sum of their entries."""
    checked = subprocess.run(
        [sys.executable, "-m", "local.check_ledger", account_id],
        cwd=ROOT,
        env={"LOCAL_RUN_FILE": str(mode.run_file), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ledger ok" in checked.stdout


def post(mode: LocalMode, path: str, body: Any = None) -> dict[str, Any]:
    answer = requests.post(mode.base_url + path, json=body or {}, timeout=60)
    assert answer.ok, answer.text
    return dict(answer.json())


def events(mode: LocalMode, detail_type: str) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{mode.base_url}/__local/events",
        params={"detail_type": detail_type, "account_id": ACCOUNT},
        timeout=10,
    )
    return list(answer.json()["events"])


def delivered(mode: LocalMode, count: int) -> bool:
    sent = requests.get(f"{mode.base_url}/__local/stripe/events", timeout=10).json()["data"]
    return len(sent) >= count and all(each["delivery"] == 200 for each in sent)


def test_created_upgraded_renewed_canceled_and_lapsed(billing_mode: LocalMode):
    mode = billing_mode
    owner = Api(mode.base_url, mint(ACCOUNT))
    admin = Api(mode.base_url, mint("support", "admin"))

    subscription = post(
        mode,
        "/__local/stripe/subscriptions",
        {"account_id": ACCOUNT, "price": "price_starter", "home_region": "AU"},
    )
    assert wait_for(lambda: delivered(mode, 2), timeout=20)
    balance = owner.balance()
    assert (balance["plan"], balance["included"]["available"]) == ("starter", 50)
    bought = admin.post(
        f"/v1/admin/accounts/{ACCOUNT}/adjustments",
        {"pool": "purchased:AU", "credits": 100, "reason": "a pack bought earlier"},
        key="bought-au",
    )
    assert bought.status_code == 200, bought.text
    ledger_ok(mode)

    post(mode, f"/__local/stripe/subscriptions/{subscription['id']}", {"price": "price_growth"})
    assert wait_for(lambda: delivered(mode, 3), timeout=20)
    balance = owner.balance()
    assert (balance["plan"], balance["included"]["available"]) == ("growth", 100)  # 50 + the difference
    ledger_ok(mode)

    period_start = balance["included"]["period_start"]
    moved = post(mode, "/__local/clock", {"advance_days": 31})
    assert (
        moved["ran"]["RefreshFunction"]["refreshed"] >= 1
    )  # the hourly backstop got there first (and the demos)
    post(mode, f"/__local/stripe/subscriptions/{subscription['id']}/cycle")
    assert wait_for(lambda: delivered(mode, 5), timeout=20)
    balance = owner.balance()
    assert balance["included"]["period_start"] > period_start
    assert (balance["included"]["available"], balance["purchased"]["AU"]) == (100, 100)
    refreshed = events(mode, "allowance.refreshed")
    assert [e["detail"]["period_start"] for e in refreshed] == [balance["included"]["period_start"]]  # once
    ledger_ok(mode)

    post(mode, f"/__local/stripe/subscriptions/{subscription['id']}", {"cancel_at_period_end": True})
    assert wait_for(lambda: delivered(mode, 6), timeout=20)
    assert owner.balance()["included"]["available"] == 100  # kept to the end of the period paid for
    ledger_ok(mode)

    post(mode, "/__local/clock", {"advance_days": 31})
    ended = post(mode, f"/__local/stripe/subscriptions/{subscription['id']}/cycle")
    assert ended["status"] == "canceled"
    assert wait_for(lambda: delivered(mode, 7), timeout=20)
    balance = owner.balance()
    assert (balance["included"]["available"], balance["included"]["allowance"]) == (0, 0)
    assert balance["purchased"]["AU"] == 100  # purchased credits stay spendable
    statement = owner.get("/v1/ledger", params={"kind": "expiry"}).json()["entries"]
    assert statement[0]["amount"] == -100
    ledger_ok(mode)


def test_the_clock_only_moves_forward_and_is_shared_by_the_functions(billing_mode: LocalMode):
    mode = billing_mode
    now = requests.get(f"{mode.base_url}/__local/clock", timeout=10).json()["now"]
    back = requests.post(f"{mode.base_url}/__local/clock", json={"now": "2020-01-01T00:00:00Z"}, timeout=10)
    assert back.status_code == 400 and back.json()["error"]["code"] == "invalid_request"
    admin = Api(mode.base_url, mint("support", "admin"))
    created = admin.post(
        "/v1/admin/accounts",
        {"account_id": "clock-co", "plan": "starter", "home_region": "AU", "billing_anchor": now[:10]},
    )
    assert created.status_code == 201, created.text
    # The function that created it read the local clock: its period starts on the local day, not the real one.
    assert created.json()["included"]["period_start"] == now[:10]
    assert (
        Path(mode.run_file).exists()
        and json.loads(Path(mode.run_file).read_text())["gateway"] == mode.base_url
    )


def test_switching_auto_recharge_on_without_a_card_leads_to_a_setup_page_that_saves_one(
    billing_mode: LocalMode,
):
    mode = billing_mode
    owner = Api(mode.base_url, mint("demo-starter"))
    settings = {"enabled": True, "regions": {"AU": {"packs": 1, "threshold": 0}}, "monthly_cap_cents": 5000}
    answer = owner.call("PUT", "/v1/auto-recharge", json=settings)
    assert answer.status_code == 200, answer.text
    assert answer.json()["card_on_file"] is False
    page = requests.get(answer.json()["setup_url"], timeout=10)
    assert page.status_code == 200 and page.text.count("<form") == 1 and "Save card" in page.text
    saved = requests.post(
        answer.json()["setup_url"], data={"card": "4242424242424242"}, allow_redirects=False, timeout=10
    )
    assert saved.status_code == 303
    assert wait_for(lambda: owner.get("/v1/auto-recharge").json()["card_on_file"], timeout=20)

    replaced = owner.post("/v1/auto-recharge/card", key="replace-card")
    assert replaced.status_code == 201, replaced.text
    assert owner.post("/v1/auto-recharge/card", key="replace-card").json() == replaced.json()
    assert requests.get(replaced.json()["setup_url"], timeout=10).status_code == 200
