"""Browser fixtures: the local mode as a subprocess, fresh accounts, and headless Debian Chromium."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.local_mode import start, stop

ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` points this at docs/screenshots, the pictures docs/dashboard.md shows.
SCREENSHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or ROOT / "artifacts" / "screenshots")
# Debian's packages; the environment may point elsewhere (another distribution's paths).
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
INSTALL_HINT = "apt-get install chromium chromium-driver"
# Headless, no sandbox (root in CI), and nothing that reaches out to the network on its own.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
DESKTOP = (1280, 900)
PHONE = (390, 844)


def _missing() -> str | None:
    """Why the browser suite cannot run here, or None."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        return f"chromium not installed: {INSTALL_HINT}"
    if importlib.util.find_spec("selenium") is None:
        return "selenium not installed: make .venv/.installed"
    if importlib.util.find_spec("local.run") is None:
        return "local mode not available (python -m local.run)"
    return None


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


_SKIPPED = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    browser = [item for item in items if item.get_closest_marker("browser")]
    reason = _missing() if browser else None
    if reason is None:
        return
    config.stash[_SKIPPED] = f"{len(browser)} browser tests skipped: {reason}"
    # CI must never pass by skipping the dashboard's tests: there the fixtures fail instead (_require).
    if not _under_ci():
        for item in browser:
            item.add_marker(pytest.mark.skip(reason=reason))


def _require() -> None:
    reason = _missing()
    if reason:
        pytest.fail(f"CI=true and the browser suite cannot run: {reason}", pytrace=False)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    message = config.stash.get(_SKIPPED, None)
    if message and not _under_ci():
        terminalreporter.write_sep("!", message, yellow=True, bold=True)


# ---- the local mode ---------------------------------------------------------------------------------


@dataclass
class LocalService:
    base_url: str

    def token(self, account_id: str, scope: str = "") -> str:
        from local.token import mint

        return mint(account_id, scope)

    def call(self, method: str, path: str, account_id: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(account_id)}", **kwargs.pop("headers", {})}
        return requests.request(method, self.base_url + path, headers=headers, timeout=10, **kwargs)

    def new_account(self, plan: str = "starter", home_region: str = "AU") -> str:
        """A fresh account per test (created through the support API), so tests never share balances."""
        account_id = f"web-{uuid.uuid4().hex[:10]}"
        body = {
            "account_id": account_id,
            "plan": plan,
            "billing_anchor": datetime.now(UTC).date().isoformat(),
            "home_region": home_region,
        }
        admin = {"Authorization": f"Bearer {self.token('support', 'admin')}"}
        answer = requests.post(f"{self.base_url}/v1/admin/accounts", json=body, headers=admin, timeout=10)
        assert answer.status_code == 201, answer.text
        return account_id


@pytest.fixture(scope="session")
def local_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    _require()
    # local.run's own defaults for the schedules, the sweeper's grace and the Twilio callbacks.
    mode = start(
        tmp_path_factory.mktemp("local"),
        timeout=90,  # moto, the gateway and the worker pools start in ~10 s idle, past 30 s on a busy 2-core machine
        LOCAL_SCHEDULE_SCALE="1",
        SWEEP_GRACE_SECONDS="120",
        LOCAL_TWILIO_CALLBACK_DELAY="0.3",
        # The dashboard is back from Checkout well before Stripe's webhook lands, as on AWS: what the page shows
        # after a purchase must come from reloading, not from a webhook that happened to be faster.
        LOCAL_STRIPE_WEBHOOK_DELAY="1.5",
        # Batches leave in slices of 10 at this rate (services/batches.py): one slice every 5 s, so a test can
        # cancel a 30-message batch between its first slice and its last.
        BATCH_RATE_PER_SECOND="2",
    )
    try:
        yield LocalService(mode.base_url)
    finally:
        stop(mode, timeout=10)


# ---- the browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _chromium() -> Iterator[Any]:
    _require()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium Manager would try to download a browser; Debian's chromium and chromedriver are used as is.
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(_chromium: Any, local_service: LocalService) -> Iterator[Any]:
    """One Chromium for the session; each test starts signed out, at desktop width."""
    _chromium.set_window_size(*DESKTOP)
    yield _chromium
    _chromium.get(local_service.base_url + "/dashboard")
    _chromium.execute_script("sessionStorage.clear()")
    _chromium.get("about:blank")


def screenshot(driver: Any, name: str, size: tuple[int, int] = DESKTOP) -> Path:
    """The whole page at `size`'s width (the window grows to the page's height for the picture)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(size[0], size[1])
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(size[0], min(max(height + 140, size[1]), 6000))
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(*DESKTOP)
    return path


def viewport_shot(driver: Any, name: str) -> Path:
    """What the window shows now, at its current size."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def section_shot(driver: Any, name: str, element_id: str) -> Path:
    """One element at the window's current width: a small picture of one state for docs/dashboard.md."""
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    element = driver.find_element(By.ID, element_id)
    size = driver.get_window_size()
    # Chromium captures only what the viewport shows: the window grows to the element's height first.
    height = int(driver.execute_script("return arguments[0].getBoundingClientRect().height", element))
    driver.set_window_size(size["width"], max(size["height"], min(height + 200, 6000)))
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
    path = SCREENSHOTS / f"{name}.png"
    element.screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    return path
