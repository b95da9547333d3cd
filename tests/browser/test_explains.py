"""The dashboard explains itself, at 1280 and 390 px: the composer's counter and replacements, the balance, the
card on file after a checkout, every control at phone width, and the API reference."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.browser.conftest import DESKTOP, PHONE, LocalService, section_shot, viewport_shot
from tests.browser.test_dashboard import AU_NUMBER, purchased, sign_in, text, text_is, type_into, wait_for

pytestmark = pytest.mark.browser

WIDTHS = pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["1280", "390"])


def width(size: tuple[int, int]) -> str:
    return str(size[0])


def at(driver: Any, service: LocalService, account: str, size: tuple[int, int]) -> None:
    driver.set_window_size(*size)
    sign_in(driver, service, account)


def admin_adjust(service: LocalService, account: str, pool: str, credits: int) -> None:
    admin = {
        "Authorization": f"Bearer {service.token('support', 'admin')}",
        "Idempotency-Key": uuid.uuid4().hex,
    }
    answer = requests.post(
        f"{service.base_url}/v1/admin/accounts/{account}/adjustments",
        json={"pool": pool, "credits": credits, "reason": "browser test"},
        headers=admin,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def click(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.CSS_SELECTOR, css)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def replacement_rows(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [str(li.text) for li in driver.find_elements(By.CSS_SELECTOR, "#q-replacements li")]


def body_value(driver: Any) -> str:
    return str(driver.execute_script("return document.getElementById('msg-body').value"))


@WIDTHS
def test_the_composer_counts_the_segment_and_replaces_what_forces_ucs2(browser, local_service, size):
    at(browser, local_service, local_service.new_account(), size)
    type_into(browser, "msg-to", AU_NUMBER)
    # 18 + 60 = 78 UTF-16 units: two UCS-2 parts (67 + 11); as GSM-7, 78 septets fit one segment.
    type_into(browser, "msg-body", "It’s “great” news " + "a" * 60)
    wait_for(browser, text_is("q-segments", "2"), "78 UCS-2 units are not 2 segments")
    assert text(browser, "q-counter") == (
        "Segment 2 of 2: 11 of 67 characters used — 56 left before a third segment."
    )
    summary = text(browser, "q-ucs2-summary")
    assert "70 characters per credit instead of 160" in summary
    assert "costs 2 credits instead of 1 (2×)" in summary and "saves 1 credit" in summary
    rows = replacement_rows(browser)
    assert len(rows) == 3
    assert "right single quotation mark, U+2019" in rows[0] and "forces UCS-2 — replace it with '?" in rows[0]
    assert "smart encoding" not in text(browser, "composer").lower()  # the owner cannot switch it
    section_shot(browser, f"11-composer-ucs2-{width(size)}", "composer")

    click(browser, "#q-replacements li:first-child button")
    wait_for(browser, lambda d: len(replacement_rows(d)) == 2, "the replaced character is still listed")
    assert body_value(browser).startswith("It's “great”")
    assert "Replaced ’ with '" in str(
        browser.execute_script("return document.getElementById('q-done').textContent")
    )
    focused = browser.execute_script("return document.activeElement.closest('#q-replacements') !== null")
    assert focused, "focus did not stay on the next character's button"

    click(browser, "#q-replace-all")
    wait_for(browser, text_is("q-encoding", "GSM-7"), "Replace all did not make the message GSM-7")
    assert body_value(browser).startswith('It\'s "great" news')
    assert text(browser, "q-segments") == "1" and text(browser, "q-credits") == "1"
    assert text(browser, "q-counter") == "78 of 160 characters used — 82 left before a second segment."
    assert not browser.find_element("id", "q-ucs2").is_displayed()
    section_shot(browser, f"12-composer-replaced-{width(size)}", "composer")


@WIDTHS
def test_an_emoji_that_doubles_the_cost_is_offered_for_removal(browser, local_service, size):
    at(browser, local_service, local_service.new_account(), size)
    type_into(browser, "msg-to", AU_NUMBER)
    type_into(browser, "msg-body", "a" * 100)
    type_into(browser, "msg-body", "😀")  # 102 units: 67 + 35
    wait_for(browser, text_is("q-credits", "2"), "100 letters and an emoji are not 2 credits")
    rows = replacement_rows(browser)
    assert len(rows) == 1
    assert "grinning face, U+1F600) makes this message cost 2× — remove it?" in rows[0]
    assert not browser.find_element("id", "q-replace-all").is_displayed()  # one character: one button
    click(browser, "#q-replacements button")
    wait_for(browser, text_is("q-credits", "1"), "removing the emoji did not bring the cost back to 1")
    assert body_value(browser) == "a" * 100
    assert text(browser, "q-counter") == "100 of 160 characters used — 60 left before a second segment."


def test_smart_encoding_is_named_only_when_the_account_has_it_on(browser, local_service):
    admin = {"Authorization": f"Bearer {local_service.token('support', 'admin')}"}
    account = f"web-smart-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {
        "account_id": account,
        "plan": "starter",
        "billing_anchor": datetime.now(UTC).date().isoformat(),
        "home_region": "AU",
        "smart_encoding": True,
    }
    created = requests.post(
        f"{local_service.base_url}/v1/admin/accounts", json=body, headers=admin, timeout=10
    )
    assert created.status_code == 201, created.text
    sign_in(browser, local_service, account)
    type_into(browser, "msg-to", AU_NUMBER)
    type_into(browser, "msg-body", "It’s “great”")
    wait_for(browser, text_is("q-encoding", "GSM-7"), "smart encoding did not count the replaced text")
    assert "Smart encoding is on for this account" in text(browser, "q-smart-applied")
    assert not browser.find_element("id", "q-ucs2").is_displayed()


@WIDTHS
def test_the_balance_says_what_each_credit_pays_for_and_what_it_sends(browser, local_service, size):
    account = local_service.new_account()  # starter: 50 included
    admin_adjust(local_service, account, "purchased:AU", 100)
    admin_adjust(local_service, account, "purchased:NZ", 3)
    at(browser, local_service, account, size)
    resets = text(browser, "included-resets")
    assert "Included credits pay for messages to any region." in resets
    assert "included credits you have not used by then lapse" in resets
    assert "only for messages to that region, and they never expire" in text(browser, "pack-rule")
    wait_for(browser, lambda d: "Australia" in text(d, "reach-AU"), "the reach table has no region names")
    assert text(browser, "reach-AU") == "Australia 50 + 100 ≈ 150 messages"
    assert text(browser, "reach-NZ") == "New Zealand 50 + 3 ≈ 53 messages"
    assert text(browser, "reach-US").endswith("≈ 50 messages")
    prices = text(browser, "price-rows")
    assert "Australia (AU) $6.20 6.2¢" in prices and "United Kingdom (UK) $6.30 6.3¢" in prices
    assert browser.execute_script(CONTROLS_FIT) == []
    section_shot(browser, f"13-balance-{width(size)}", "balance")
    section_shot(browser, f"14-prices-{width(size)}", "packs")


@WIDTHS
def test_after_buying_a_pack_with_auto_recharge_on_the_card_on_file_shows_without_a_reload(
    browser, local_service, size
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    account = local_service.new_account()
    settings = {"enabled": True, "regions": {"AU": {"packs": 1, "threshold": 5}}, "monthly_cap_cents": 5000}
    assert local_service.call("PUT", "/v1/auto-recharge", account, json=settings).status_code == 200
    at(browser, local_service, account, size)
    assert "Card on file\nNo" in text(browser, "ar-state")
    before = purchased(browser, "AU")
    Select(browser.find_element(By.ID, "pack-region")).select_by_value("AU")
    click(browser, "#pack-buy")
    wait_for(browser, lambda d: "/dashboard" not in d.current_url, "no checkout")
    click(browser, "form [type=submit]")  # the stand-in's Pay button; its webhook lands 1.5 s later
    wait_for(browser, lambda d: "/dashboard" in d.current_url, "checkout did not return to the dashboard")
    loads = browser.execute_script("return performance.getEntriesByType('navigation').length")
    wait_for(browser, lambda d: purchased(d, "AU") == before + 100, "the credits did not arrive")
    wait_for(browser, lambda d: "Card on file\nYes" in text(d, "ar-state"), "the card on file is not shown")
    assert local_service.call("GET", "/v1/auto-recharge", account).json()["card_on_file"] is True
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == loads
    assert (
        browser.execute_script("return document.body.dataset.ready") == "true"
    )  # the same page, not reloaded
    section_shot(browser, f"15-card-on-file-{width(size)}", "recharge")


@WIDTHS
def test_refresh_reloads_the_balance_the_statement_and_auto_recharge(browser, local_service, size):
    account = local_service.new_account()
    at(browser, local_service, account, size)
    admin_adjust(local_service, account, "purchased:NZ", 7)
    settings = {"enabled": True, "regions": {"NZ": {"packs": 2, "threshold": 9}}, "monthly_cap_cents": 1234}
    assert local_service.call("PUT", "/v1/auto-recharge", account, json=settings).status_code == 200
    click(browser, "#refresh")
    wait_for(browser, lambda d: "Up to date." in text(d, "notices"), "Refresh did not finish")
    assert purchased(browser, "NZ") == 7
    assert "Adjustment by support (browser test)" in text(browser, "ledger-rows")
    assert "$0.00 of $12.34" in text(browser, "ar-state")
    assert browser.find_element("id", "ar-threshold-NZ").get_attribute("value") == "9"


# Every visible control inside the viewport, none clipping its own text, no sideways scrolling (of the page or
# of a table), and each
# menu wide enough for its longest option (a <select> shows the chosen option cut, with no scrollbar).
CONTROLS_FIT = """
const problems = [];
const width = document.documentElement.clientWidth;
const page = document.documentElement.scrollWidth;
if (page > width) problems.push(`page scrolls sideways: ${page}`);
for (const wrap of document.querySelectorAll('.table-wrap')) {
  if (!wrap.offsetParent || wrap.scrollWidth <= wrap.clientWidth) continue;
  problems.push(`${wrap.firstElementChild.id} scrolls sideways`);
}
const canvas = document.createElement('canvas').getContext('2d');
for (const el of document.querySelectorAll('input, select, textarea, button')) {
  const box = el.getBoundingClientRect();
  if (!box.width || !el.offsetParent) continue;
  const name = el.id || el.textContent.trim() || el.outerHTML.slice(0, 40);
  if (box.left < 0 || box.right > width + 0.5) problems.push(`${name} outside the viewport: ${box.left}-${box.right}`);
  if (el.tagName === 'BUTTON' && el.scrollWidth > el.clientWidth + 1) problems.push(`${name} clips its label`);
  if (el.tagName === 'SELECT') {
    const style = getComputedStyle(el);
    canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const room = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 24;
    for (const option of el.options) {
      const needed = canvas.measureText(option.textContent).width;
      if (needed > room) problems.push(`${name}: "${option.textContent}" needs ${needed} px, has ${room}`);
    }
  }
}
return problems;
"""


@WIDTHS
def test_every_control_fits_and_the_region_menu_shows_the_whole_price(browser, local_service, size):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    at(browser, local_service, local_service.new_account(), size)
    type_into(browser, "msg-to", AU_NUMBER)
    type_into(browser, "msg-body", "Café’s “new” menu 😀")  # the replacement buttons show too
    wait_for(browser, lambda d: len(replacement_rows(d)) == 4, "the replacement list did not show")
    region = Select(browser.find_element(By.ID, "pack-region"))
    assert region.first_selected_option.text == "Australia — $6.20 / 100"
    assert browser.execute_script(CONTROLS_FIT) == []


@WIDTHS
def test_the_api_reference_is_swagger_ui_from_this_origin_with_shapes_and_examples(
    browser, local_service, size
):
    from selenium.webdriver.common.by import By

    browser.set_window_size(*size)
    # Record every Content-Security-Policy violation from the first script on.
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.__csp = []; document.addEventListener('securitypolicyviolation',"
            " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        },
    )
    browser.get(local_service.base_url + "/v1/docs")
    wait_for(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 15,
        "Swagger UI did not render",
    )
    tags = [t.text.split("\n")[0] for t in browser.find_elements(By.CSS_SELECTOR, ".opblock-tag")]
    assert tags[:3] == ["Messages", "Batches", "Balance and statement"], tags
    viewport_shot(browser, f"17-api-reference-{width(size)}")
    quote = browser.find_element(By.ID, "operations-Messages-post_quote")
    quote.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait_for(browser, lambda d: "last_segment_units_left" in quote.text, "the quote's example is not shown")
    assert "+61412345678" in quote.text  # the request example
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", quote)
    viewport_shot(browser, f"18-api-reference-quote-{width(size)}")
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(url.startswith(local_service.base_url) for url in resources), resources
    assert browser.execute_script("return window.__csp") == []
