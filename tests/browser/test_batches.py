"""The Batches section and the statement's batch lines in Chromium, at 1280 and 390 px: a CSV read in the page
and checked by the pre-flight (invalid rows, duplicates, credits per region and pool), a batch short of credits,
one sent with a double click that runs once to completion with its per-message results, one cancelled midway,
and the statement's reservation and settlement lines with their messages. The batches run through local mode:
its worker at the browser fixture's pace (2 messages/s) and the Twilio stand-in's callbacks."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from local.stripe_cards import SUCCEEDS
from tests.browser.conftest import DESKTOP, PHONE, LocalService, section_shot
from tests.browser.test_dashboard import sign_in, text, type_into, wait_for
from tests.browser.test_explains import CONTROLS_FIT, WIDTHS, click, width
from tests.browser.test_states import AU_RULE, buttons, pay_for_a_pack, set_auto_recharge

pytestmark = pytest.mark.browser

# The Twilio stand-in's numbers (local/twilio_standin.py): refused at once, failed, undelivered.
REFUSED, FAILS, UNDELIVERED = "+61491570156", "+61491570157", "+61491570158"
TEMPLATE = "Hi {name}, thanks for visiting {clinic}. Reply STOP to opt out."
PREFLIGHT_CSV = "\n".join(
    [
        "to,name,clinic",
        '+61412000101,"Smith, Jo",Bondi',  # a quoted value holding the delimiter
        "+61412000102,Ana,Bondi",
        "12345,Bo,Bondi",  # invalid_number
        "+33612345678,Chloé,Paris",  # unsupported_region
        "+61 412 000 101,Jo again,Bondi",  # the same number as row 1 once normalised
        ",Nobody,Bondi",  # no number: kept out by the page itself
        "+14155550123,Sam,SF",
    ]
)
RUN_TIMEOUT = 90  # seconds: a batch paced at 2 messages/s, settled every 5 s, on a busy machine


def paste(driver: Any, element_id: str, value: str) -> None:
    """What pasting does: the whole value at once, then one input event."""
    from selenium.webdriver.common.by import By

    driver.execute_script(
        "arguments[0].value = arguments[1];arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        driver.find_element(By.ID, element_id),
        value,
    )


def count_requests(driver: Any) -> None:
    """From now on the page's fetch calls are recorded in window.seenRequests."""
    driver.execute_script(
        "window.seenRequests = []; const original = window.fetch;"
        "window.fetch = (...args) => { window.seenRequests.push(String(args[0])); return original(...args); };"
    )


def cells(row: Any, tag: str = "td") -> list[str]:
    from selenium.webdriver.common.by import By

    return [str(c.text) for c in row.find_elements(By.CSS_SELECTOR, "th, td" if tag == "any" else tag)]


def table_rows(driver: Any, css: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [cells(tr, "any") for tr in driver.find_elements(By.CSS_SELECTOR, css)]


def csv_of(numbers: list[str]) -> str:
    return "\n".join(["to,name,clinic", *(f"{n},Guest {i},Bondi" for i, n in enumerate(numbers, 1))])


def check(driver: Any, csv: str, template: str = TEMPLATE) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    paste(driver, "batch-csv", csv)
    paste(driver, "batch-template", template)
    click(driver, "#batch-check")
    # The first quote may start the batch API's first worker process (local/workers.py): more than WAIT when busy.
    WebDriverWait(driver, RUN_TIMEOUT, poll_frequency=0.1).until(
        lambda d: d.find_element("id", "batch-preflight").is_displayed(), "no pre-flight shown"
    )


def wait_until_ended(driver: Any, timeout: float = RUN_TIMEOUT) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    def ended(d: Any) -> str | None:
        status = d.find_element("id", "batch-run").get_attribute("data-status")
        return status if status in ("completed", "cancelled") else None

    return str(WebDriverWait(driver, timeout, poll_frequency=0.25).until(ended, "the batch did not end"))


def batch_of(service: LocalService, account: str, batch_id: str) -> dict[str, Any]:
    return dict(service.call("GET", f"/v1/batches/{batch_id}", account).json())


def balance(service: LocalService, account: str) -> dict[str, Any]:
    return dict(service.call("GET", "/v1/balance", account).json())


def shown_batch(driver: Any) -> str:
    return str(driver.execute_script("return JSON.parse(sessionStorage.getItem('smscredits.batch')).id"))


@WIDTHS
def test_a_pasted_csv_is_checked_in_the_page_then_by_the_pre_flight_row_by_row(
    browser, local_service, size, tmp_path: Path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(*size)
    sign_in(browser, local_service, local_service.new_account())
    if size == PHONE:  # the upload path: the file's text lands in the CSV box
        upload = tmp_path / "recipients.csv"
        upload.write_text(PREFLIGHT_CSV, encoding="utf-8")
        browser.find_element(By.ID, "batch-file").send_keys(str(upload))
    else:
        paste(browser, "batch-csv", PREFLIGHT_CSV)
    wait_for(
        browser,
        lambda d: text(d, "batch-csv-read") == "7 rows; columns: to, name, clinic.",
        f"the CSV is not described: {text(browser, 'batch-csv-read')!r}",
    )

    # An unknown placeholder is refused in the page: no request leaves.
    count_requests(browser)
    type_into(browser, "batch-template", "Hi {nmae}, thanks for visiting {clinic}.")
    click(browser, "#batch-check")
    assert text(browser, "batch-error") == (
        "The message uses {nmae}, but the CSV has no column of that name. Its columns are to, name, clinic: "
        "write one of them in braces, like {to}."
    )
    assert browser.execute_script("return window.seenRequests") == []
    assert not browser.find_element(By.ID, "batch-preflight").is_displayed()

    paste(browser, "batch-template", TEMPLATE)
    click(browser, "#batch-check")
    WebDriverWait(browser, RUN_TIMEOUT, poll_frequency=0.1).until(
        lambda d: d.find_element(By.ID, "batch-preflight").is_displayed(), "no pre-flight"
    )
    assert browser.execute_script("return window.seenRequests") == ["/v1/batches/quote"]
    assert text(browser, "batch-error") == ""
    assert text(browser, "batch-summary") == (
        "7 rows: 3 messages to send, 3 rows that cannot be sent, 1 duplicate left out. 3 credits in all."
    )
    assert table_rows(browser, "#batch-problem-rows tr") == [
        ["3", "12345", "not a valid phone number"],
        [
            "4",
            "+33612345678",
            "a country we do not send to (only Australia, USA, United Kingdom, New Zealand)",
        ],
        ["5", "+61 412 000 101", "the same number as row 1: sent once, to row 1"],
        ["6", "—", 'no phone number in the "to" column'],
    ]
    assert table_rows(browser, "#batch-region-rows tr") == [
        ["Australia", "2", "2", "2"],
        ["USA", "1", "1", "1"],
    ]
    assert text(browser, "batch-funding").startswith("Paid from: 3 included credits")
    assert text(browser, "batch-afford").startswith("Enough credits: 3 credits are reserved when you send")
    assert text(browser, "batch-first") == "Hi Smith, Jo, thanks for visiting Bondi. Reply STOP to opt out."
    assert text(browser, "batch-send") == "Send 3 messages — 3 credits"
    assert browser.find_element(By.ID, "batch-send").is_enabled()
    if size == PHONE:
        assert browser.execute_script(CONTROLS_FIT) == []
    section_shot(browser, f"26-batch-preflight-{width(size)}", "batches")

    # A change after the check asks for a new one: Send never posts what was not quoted.
    type_into(browser, "batch-template", " See you soon.")
    assert not browser.find_element(By.ID, "batch-preflight").is_displayed()


def test_a_batch_short_of_credits_says_what_auto_recharge_buys_or_which_pack_would_pay(
    browser, local_service
):
    from selenium.webdriver.common.by import By

    account = local_service.new_account()  # 50 included
    set_auto_recharge(local_service, account, regions=AU_RULE)
    pay_for_a_pack(local_service, account, SUCCEEDS)  # + 100 AU, and the card is on file
    sign_in(browser, local_service, account)
    numbers = [f"+61412{i:06d}" for i in range(80)]
    # Two segments a message: 80 messages need 160 credits, and the account holds 150.
    long_template = "Hi {name}, " + "your appointment at {clinic} is confirmed for tomorrow. " * 3
    check(browser, csv_of(numbers), long_template)
    assert text(browser, "batch-summary") == "80 rows: 80 messages to send. 160 credits in all."
    assert text(browser, "batch-short") == (
        "Not enough credits for this batch: 10 credits short for Australia. Auto-recharge will buy 1 pack for "
        "Australia ($6.20) before reserving, which covers it."
    )
    assert browser.find_element(By.ID, "batch-send").is_enabled()
    section_shot(browser, "27-batch-recharge-1280", "batch-preflight")
    browser.set_window_size(*PHONE)
    assert browser.execute_script(CONTROLS_FIT) == []
    section_shot(browser, "27-batch-recharge-390", "batch-preflight")
    browser.set_window_size(*DESKTOP)

    answer = local_service.call(
        "PUT",
        "/v1/auto-recharge",
        account,
        json={"enabled": False, "regions": AU_RULE, "monthly_cap_cents": 5000},
    )
    assert answer.status_code == 200, answer.text
    click(browser, "#refresh")
    wait_for(browser, lambda d: "Status\nOff" in text(d, "ar-state"), "auto-recharge still shows on")
    click(browser, "#batch-check")
    wait_for(
        browser,
        lambda d: (
            d.find_element(By.ID, "batch-preflight").is_displayed()
            and "will buy" not in text(d, "batch-afford")
        ),
        "the pre-flight was not run again",
    )
    short = browser.find_element(By.ID, "batch-short")
    assert short.text.startswith(
        "Not enough credits for this batch: 10 credits short for Australia. Auto-recharge is off."
    )
    assert buttons(short) == ["Buy 1 pack for Australia — $6.20"]
    assert not browser.find_element(By.ID, "batch-send").is_enabled()
    assert "insufficient" not in text(browser, "batches")
    section_shot(browser, "28-batch-unaffordable-1280", "batch-preflight")
    browser.set_window_size(*PHONE)
    assert browser.execute_script(CONTROLS_FIT) == []
    section_shot(browser, "28-batch-unaffordable-390", "batch-preflight")


def test_a_double_clicked_send_runs_one_batch_to_completion_with_each_messages_result(browser, local_service):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    account = local_service.new_account()  # 50 included
    sign_in(browser, local_service, account)
    numbers = ["+61412000201", "+61412000202", "+61412000203", REFUSED, FAILS, UNDELIVERED]
    check(browser, csv_of(numbers))
    send = browser.find_element(By.ID, "batch-send")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", send)
    ActionChains(browser).double_click(send).perform()
    wait_for(browser, lambda d: d.find_element(By.ID, "batch-run").is_displayed(), "no progress shown")
    assert "Batch accepted: 6 messages, 6 credits reserved (6 included)." in text(browser, "notices")
    assert wait_until_ended(browser) == "completed"
    assert text(browser, "batch-status") == (
        "Completed: 3 delivered · 1 not delivered (charged) · 1 failed (credits returned) · 1 refused by the "
        "carrier (credits returned). 4 credits charged, 2 returned to your balance."
    )
    assert browser.find_element(By.ID, "batch-bar").get_attribute("value") == "6"
    rows = table_rows(browser, "#batch-msgs-rows tr")
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[4] == ["5", "+61******157\nrow 5", "failed (credits returned)", "1"]
    Select(browser.find_element(By.ID, "batch-msgs-filter")).select_by_value("failed")
    wait_for(browser, lambda d: len(table_rows(d, "#batch-msgs-rows tr")) == 1, "the filter did not apply")

    # One batch for the double click: 6 credits reserved once, 2 of them back.
    view = batch_of(local_service, account, shown_batch(browser))
    assert view["credits"] == {"held": 6, "posted": 4, "returned": 2}
    after = balance(local_service, account)
    assert after["included"]["available"] == 46 and after["held"] == 0
    wait_for(browser, lambda d: text(d, "held") == "0", "the balance was not reloaded when the batch ended")
    Select(browser.find_element(By.ID, "batch-msgs-filter")).select_by_value("")
    wait_for(browser, lambda d: len(table_rows(d, "#batch-msgs-rows tr")) == 6, "the filter was not cleared")
    section_shot(browser, "29-batch-completed-1280", "batch-run")
    browser.refresh()  # the tab follows the batch it sent again after a reload
    wait_until_ended(browser)
    assert text(browser, "batch-status").startswith("Completed: 3 delivered")
    browser.set_window_size(*PHONE)
    assert browser.execute_script(CONTROLS_FIT) == []
    section_shot(browser, "29-batch-completed-390", "batch-run")


def test_a_batch_cancelled_midway_stops_its_unsent_messages_and_returns_their_credits(browser, local_service):
    from selenium.webdriver.common.by import By

    account = local_service.new_account()  # 50 included
    sign_in(browser, local_service, account)
    check(browser, csv_of([f"+61412{i:06d}" for i in range(30)]))  # 3 slices, 5 s apart
    click(browser, "#batch-send")
    wait_for(
        browser,
        lambda d: (
            d.find_element(By.ID, "batch-run").is_displayed()
            and text(d, "batch-status").startswith("Sending:")
        ),
        "the batch did not start sending",
    )
    click(browser, "#batch-cancel")
    wait_for(browser, lambda d: text(d, "batch-cancel-result"), "the cancel has no answer")
    assert text(browser, "batch-cancel-result").startswith(
        "Cancelled. Messages not yet handed to the carrier will not be sent"
    )
    assert wait_until_ended(browser) == "cancelled"
    view = batch_of(local_service, account, shown_batch(browser))
    cancelled = view["counts"].get("cancelled", 0)
    assert 10 <= cancelled < 30, view  # the first slice had left; at least the last one had not
    assert view["credits"] == {"held": 30, "posted": 30 - cancelled, "returned": cancelled}
    assert text(browser, "batch-status") == (
        f"Cancelled: {30 - cancelled} messages had been handed to the carrier, {cancelled} were not sent. "
        f"{30 - cancelled} credits charged, {cancelled} returned to your balance."
    )
    assert balance(local_service, account)["included"]["available"] == 50 - (30 - cancelled)
    assert not browser.find_element(By.ID, "batch-cancel").is_displayed()
    section_shot(browser, "30-batch-cancelled-1280", "batch-run")
    browser.set_window_size(*PHONE)
    assert browser.execute_script(CONTROLS_FIT) == []
    section_shot(browser, "30-batch-cancelled-390", "batch-run")


def test_the_statement_shows_a_batch_as_its_reservation_and_settlements_with_its_messages(
    browser, local_service
):
    from selenium.webdriver.common.by import By

    account = local_service.new_account()  # 50 included
    entries = [{"to": n, "body": "Thanks for visiting!"} for n in ("+61412000301", "+61412000302", FAILS)]
    created = local_service.call(
        "POST",
        "/v1/batches",
        account,
        json={"messages": entries},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while batch_of(local_service, account, batch_id)["status"] != "completed":
        assert time.monotonic() < deadline, batch_of(local_service, account, batch_id)
        time.sleep(0.5)
    view = batch_of(local_service, account, batch_id)

    sign_in(browser, local_service, account)
    lines = browser.find_elements(By.CSS_SELECTOR, "#ledger-rows tr[data-kind=batch]")
    assert [line.get_attribute("data-settlement") for line in lines] == [
        *(str(n) for n in range(view["settlements"], 0, -1)),
        "0",
    ]
    reservation = [str(td.text) for td in lines[-1].find_elements(By.TAG_NAME, "td")][1:]
    assert reservation == [
        "Batch of 3 messages — 3 credits reserved (3 included); completed: 2 charged, 1 returned Messages",
        "-3",
        "47 included",
    ]
    settled = [[str(td.text) for td in line.find_elements(By.TAG_NAME, "td")][1:] for line in lines[:-1]]
    if view["settlements"] == 1:  # a slow machine may settle a batch this small in two steps
        assert settled == [
            [
                "Batch of 3 messages — settlement 1, the last: 1 credit returned (1 included) for messages not "
                "sent or failed Messages",
                "+1",
                "48 included",
            ]
        ]
    assert sum(int(s[1]) for s in settled) == 1  # the failed message's credit, returned once
    assert "held from" not in text(browser, "ledger-rows")  # no entry of the batch shows on its own

    drill = lines[-1].find_element(By.CSS_SELECTOR, "button.drill")
    drill.click()
    assert drill.get_attribute("aria-expanded") == "true"
    sub = f"drill-{batch_id}-0"
    wait_for(
        browser, lambda d: len(table_rows(d, f"#{sub}-msgs-rows tr[data-status]")) == 3, "no messages shown"
    )
    assert table_rows(browser, f"#{sub}-msgs-rows tr")[2] == [
        "3",
        "+61******157",
        "failed (credits returned)",
        "1",
    ]
    section_shot(browser, "31-statement-batch-1280", "statement")
    browser.set_window_size(*PHONE)
    assert browser.execute_script(CONTROLS_FIT) == []
    section_shot(browser, "31-statement-batch-390", "statement")
    drill.click()
    assert browser.find_elements(By.ID, sub) == [] and drill.get_attribute("aria-expanded") == "false"
