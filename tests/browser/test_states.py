"""Where money goes wrong, the dashboard says so in words with the next step, at 1280 and 390 px: a declined card
(and Update card's card setup), the bank asking to confirm a payment, a disputed payment, the monthly cap reached,
a low or depleted region, a send short of credits, a legacy account asking support for its migration, and the
statement's line per message with each purchase's receipt. Every state is made through local mode's real routes:
the Stripe stand-in's test cards (its disputing card sends the dispute), support adjustments and the owner's
auto-recharge settings."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
import requests

from local.stripe_cards import AUTHENTICATES, DECLINES, DISPUTED, SUCCEEDS
from tests.browser.conftest import DESKTOP, PHONE, LocalService, section_shot
from tests.browser.test_dashboard import AU_NUMBER, purchased, sign_in, text, type_into, wait_for
from tests.browser.test_explains import CONTROLS_FIT, admin_adjust, click

pytestmark = pytest.mark.browser

AU_RULE = {"AU": {"packs": 1, "threshold": 0}}


def set_auto_recharge(service: LocalService, account: str, **settings: Any) -> dict[str, Any]:
    body = {"enabled": True, "regions": AU_RULE, "monthly_cap_cents": 5000, **settings}
    answer = service.call("PUT", "/v1/auto-recharge", account, json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def auto_recharge(service: LocalService, account: str) -> dict[str, Any]:
    return dict(service.call("GET", "/v1/auto-recharge", account).json())


def pay_for_a_pack(service: LocalService, account: str, card: str) -> None:
    """Checkout for one AU pack with auto-recharge on, paid on the stand-in's page with `card`; waits for the
    webhooks' credits and saved card."""
    before = service.call("GET", "/v1/balance", account).json()["purchased"]["AU"]
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    session = service.call(
        "POST", "/v1/packs/checkout", account, json={"region": "AU", "quantity": 1}, headers=headers
    )
    assert session.status_code == 201, session.text
    page = requests.get(session.json()["checkout_url"], timeout=10)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action, page.text
    paid = requests.post(action.group(1), data={"card": card}, allow_redirects=False, timeout=10)
    assert paid.status_code == 303, paid.text
    deadline = time.monotonic() + 15
    while service.call("GET", "/v1/balance", account).json()["purchased"]["AU"] != before + 100:
        assert time.monotonic() < deadline, "the webhook did not grant the pack"
        time.sleep(0.2)
    while not auto_recharge(service, account)["card_on_file"]:  # another webhook may bring the card
        assert time.monotonic() < deadline, "the card was not saved"
        time.sleep(0.2)


def empty(service: LocalService, account: str) -> None:
    """Support takes every credit away, so the next send runs short."""
    balance = service.call("GET", "/v1/balance", account).json()
    pools = {"included": balance["included"]["available"]}
    pools |= {f"purchased:{region}": n for region, n in balance["purchased"].items()}
    for pool, credits in pools.items():
        if credits:
            admin_adjust(service, account, pool, -credits)


def banners(driver: Any) -> list[str]:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(5):  # the banners are drawn again on every refresh: read them whole or read again
        try:
            return [str(box.text) for box in driver.find_elements(By.CSS_SELECTOR, "#account-state > div")]
        except StaleElementReferenceException:
            continue
    raise AssertionError("the banners kept changing while they were read")


def banner(driver: Any, words: str) -> Any:
    """The banner that says `words`, once the page shows it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def found(d: Any) -> Any:
        try:
            boxes = d.find_elements(By.CSS_SELECTOR, "#account-state > div")
            return next((box for box in boxes if words in box.text), None)
        except StaleElementReferenceException:  # drawn again while read: look again
            return None

    return wait_for(driver, found, f"no banner says {words!r}: {banners(driver)}")


def buttons(element: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [str(b.text) for b in element.find_elements(By.TAG_NAME, "button")]


def at_phone_width(driver: Any, name: str, element_id: str) -> None:
    """The same state at 390 px: every control inside the viewport, and its picture."""
    driver.set_window_size(*PHONE)
    assert driver.execute_script(CONTROLS_FIT) == []
    section_shot(driver, f"{name}-390", element_id)


def account_with_a_declining_card(service: LocalService) -> str:
    """Auto-recharge on for AU, its saved card declines off-session charges, and no credits left."""
    account = service.new_account()
    set_auto_recharge(service, account)
    pay_for_a_pack(service, account, DECLINES)
    empty(service, account)
    return account


def send(service: LocalService, account: str) -> requests.Response:
    return service.call(
        "POST",
        "/v1/messages",
        account,
        json={"to": AU_NUMBER, "body": "hello"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )


def send_short(service: LocalService, account: str, times: int) -> None:
    """Sends that run short of credits: each tries a top-up, which the card declines."""
    for _ in range(times):
        sent = send(service, account)
        assert sent.status_code == 402, sent.text


def declined_account(service: LocalService) -> str:
    """Three declined top-ups in a row: auto-recharge switched itself off."""
    account = account_with_a_declining_card(service)
    send_short(service, account, 3)
    assert auto_recharge(service, account)["disabled_reason"] == "card_declined"
    return account


def test_a_declined_card_says_auto_recharge_is_off_and_update_card_saves_a_new_one(browser, local_service):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    account = account_with_a_declining_card(local_service)
    send_short(local_service, account, 1)
    sign_in(browser, local_service, account)
    failing = banner(browser, "The last automatic top-up failed (1 failure in a row): after 3, auto-recharge")
    assert buttons(failing) == ["Update card"]
    send_short(local_service, account, 2)
    click(browser, "#refresh")
    declined = banner(browser, "Your card was declined, auto-recharge is off.")
    assert not any("The last automatic top-up failed" in b for b in banners(browser))
    assert auto_recharge(local_service, account)["disabled_reason"] == "card_declined"
    assert buttons(declined) == ["Update card"]
    assert "card_declined" not in text(browser, "account-state")
    assert "declined three times in a row" in text(browser, "ar-state")
    section_shot(browser, "20-declined-1280", "account-state")
    at_phone_width(browser, "20-declined", "account-state")

    # Update card: the stand-in's card setup page (POST /v1/auto-recharge/card), nothing charged, no checkout.
    browser.set_window_size(*DESKTOP)
    click(browser, "#account-state button")
    wait_for(browser, lambda d: "/dashboard" not in d.current_url, "Update card did not open the card setup")
    assert (
        "Save a card for auto-recharge" in browser.page_source
        and "Nothing is charged now." in browser.page_source
    )
    assert "Pay" not in [str(b.text) for b in browser.find_elements(By.TAG_NAME, "button")]
    Select(browser.find_element(By.ID, "card")).select_by_value(SUCCEEDS)
    click(browser, "form [type=submit]")  # Save card
    wait_for(
        browser, lambda d: "/dashboard" in d.current_url, "the card setup did not return to the dashboard"
    )
    wait_for(
        browser,
        lambda d: "Card saved: auto-recharge is on again." in text(d, "notices"),
        f"no word on the saved card: {text(browser, 'notices')!r}",
    )
    assert "?card=" not in browser.current_url
    assert "Status\nOn" in text(browser, "ar-state")
    assert not any("declined" in b for b in banners(browser))
    settings = auto_recharge(local_service, account)
    assert settings["enabled"] is True and settings["disabled_reason"] is None
    assert settings["card_on_file"] is True and settings["consecutive_failures"] == 0
    assert purchased(browser, "AU") == 0  # nothing was bought to save it
    # The new card is the one auto-recharge charges: the next short send tops up and goes out.
    assert send(local_service, account).status_code == 202
    assert local_service.call("GET", "/v1/balance", account).json()["purchased"]["AU"] == 99


def test_update_card_cancelled_changes_nothing(browser, local_service):
    from selenium.webdriver.common.by import By

    account = declined_account(local_service)
    before = auto_recharge(local_service, account)
    sign_in(browser, local_service, account)
    click(browser, "#account-state button")  # Update card
    wait_for(browser, lambda d: "/dashboard" not in d.current_url, "Update card did not open the card setup")
    browser.find_element(By.LINK_TEXT, "Cancel and go back").click()
    wait_for(browser, lambda d: "Card update cancelled" in text(d, "notices"), "no word on the cancel")
    assert "the card did not change" in text(browser, "notices")
    assert auto_recharge(local_service, account) == before  # still off, for the declined card
    banner(browser, "Your card was declined, auto-recharge is off.")
    assert "Status\nOff" in text(browser, "ar-state")


def test_auto_recharge_on_without_a_card_offers_to_add_one_without_buying(browser, local_service):
    account = local_service.new_account()
    set_auto_recharge(local_service, account)  # answers a setup_url, not followed: no card yet
    sign_in(browser, local_service, account)
    no_card = banner(browser, "Auto-recharge is on but has no card yet")
    assert buttons(no_card) == ["Add a card", "Buy 1 pack for Australia — $6.20"]
    click(browser, "#account-state button")  # Add a card
    wait_for(browser, lambda d: "/dashboard" not in d.current_url, "Add a card did not open the card setup")
    assert "Save a card for auto-recharge" in browser.page_source
    click(browser, "form [type=submit]")  # Save card, with the stand-in's preselected card
    wait_for(
        browser, lambda d: "/dashboard" in d.current_url, "the card setup did not return to the dashboard"
    )
    wait_for(browser, lambda d: "Card saved for auto-recharge." in text(d, "notices"), "no word on the card")
    assert "Card on file\nYes" in text(browser, "ar-state")
    assert not any("no card yet" in b for b in banners(browser))
    assert auto_recharge(local_service, account)["card_on_file"] is True
    assert purchased(browser, "AU") == 0


def test_the_bank_asking_to_confirm_a_payment_says_so_and_offers_update_card(browser, local_service):
    account = local_service.new_account()
    set_auto_recharge(local_service, account)
    pay_for_a_pack(local_service, account, AUTHENTICATES)  # off-session charges need the owner
    empty(local_service, account)
    send_short(local_service, account, 1)  # one top-up the bank wants confirmed switches it off at once
    assert auto_recharge(local_service, account)["disabled_reason"] == "authentication_required"

    sign_in(browser, local_service, account)
    asked = banner(browser, "Auto-recharge is off: your bank asked to confirm a payment")
    assert asked.text.startswith(
        "Auto-recharge is off: your bank asked to confirm a payment, and an automatic top-up cannot do that "
        "without you. Update the card and confirm it with your bank if it asks (nothing is charged now)"
    )
    assert buttons(asked) == ["Update card"]
    assert "authentication_required" not in text(browser, "account-state")
    assert "Switched off because\nyour bank asked to confirm a payment" in text(browser, "ar-state")
    section_shot(browser, "32-bank-confirmation-1280", "account-state")
    at_phone_width(browser, "32-bank-confirmation", "account-state")


def test_a_disputed_payment_says_its_credits_were_taken_back_and_auto_recharge_is_off(browser, local_service):
    from selenium.webdriver.common.by import By

    account = local_service.new_account()
    set_auto_recharge(local_service, account)
    pay_for_a_pack(local_service, account, DISPUTED)  # paid, then disputed as fraudulent
    deadline = time.monotonic() + 20
    while auto_recharge(local_service, account)["disabled_reason"] != "payment_disputed":
        assert time.monotonic() < deadline, "the dispute did not reach the service"
        time.sleep(0.2)

    sign_in(browser, local_service, account)
    disputed = banner(browser, "a card payment was disputed")
    assert disputed.text == (
        "Auto-recharge is off: a card payment was disputed, so the credits it bought that were not spent yet were "
        "taken back. It comes back on by itself if the dispute is decided for you, or switch it on again below."
    )
    assert "bad" in str(disputed.get_attribute("class"))
    assert purchased(browser, "AU") == 0
    clawbacks = browser.find_elements(By.CSS_SELECTOR, "#ledger-rows tr[data-kind=clawback]")
    assert [str(row.find_elements(By.TAG_NAME, "td")[1].text) for row in clawbacks] == [
        "Refund or dispute — 100 credits taken back from AU"
    ]
    section_shot(browser, "33-dispute-1280", "account-state")
    at_phone_width(browser, "33-dispute", "account-state")


def test_the_monthly_cap_reached_offers_to_raise_it_and_the_short_send_says_why(browser, local_service):
    account = local_service.new_account()
    set_auto_recharge(local_service, account)
    pay_for_a_pack(local_service, account, SUCCEEDS)
    set_auto_recharge(local_service, account, monthly_cap_cents=100)  # $1: one AU pack ($6.20) passes it
    empty(local_service, account)

    sign_in(browser, local_service, account)
    capped = banner(browser, "Monthly cap reached")
    assert (
        "auto-recharge cannot buy 1 pack for Australia ($6.20) — $0.00 of your $1.00 cap is spent this period"
        in capped.text
    )
    assert buttons(capped) == ["Raise the cap", "Buy 1 pack for Australia — $6.20"]

    type_into(browser, "msg-to", AU_NUMBER)
    type_into(browser, "msg-body", "Your table is ready.")
    click(browser, "#msg-send")
    short = wait_for(browser, lambda d: text(d, "send-short"), "the short send is not explained")
    assert (
        "Not enough credits for this message to Australia: it needs 1 credit, and your included and AU credits"
        " hold 0 — 1 short. Auto-recharge could not top up: it would pass your monthly cap." in short
    )
    assert "insufficient_credits" not in short and text(browser, "quote-error") == ""
    section_shot(browser, "21-cap-reached-1280", "account-state")
    section_shot(browser, "22-send-short-1280", "composer")

    click(browser, "#account-state button")  # Raise the cap
    focused = browser.execute_script("return document.activeElement.id")
    assert focused == "ar-cap"
    at_phone_width(browser, "21-cap-reached", "account-state")
    section_shot(browser, "22-send-short-390", "composer")


def test_low_and_depleted_regions_and_a_short_send_offer_the_pack_that_pays(browser, local_service):
    account = local_service.new_account()  # starter: 50 included credits pay for any region
    admin_adjust(local_service, account, "included", -50)
    admin_adjust(local_service, account, "purchased:NZ", 12)
    admin_adjust(local_service, account, "purchased:GB", 20)

    sign_in(browser, local_service, account)
    low = banner(browser, "Low balance for New Zealand")
    assert low.text.startswith(
        "Low balance for New Zealand: 12 credits left (≈ 12 messages), below your warning level of 20."
    )
    assert buttons(low) == ["Buy 1 pack for New Zealand — $12.60"]
    depleted = banner(browser, "No credits left for messages to Australia")
    assert buttons(depleted) == ["Buy 1 pack for Australia — $6.20"]
    states = " | ".join(banners(browser))
    assert "No credits left for messages to USA" in states
    assert "United Kingdom" not in states  # 20 is the threshold: not below it
    section_shot(browser, "23-low-balance-1280", "account-state")
    at_phone_width(browser, "23-low-balance", "account-state")

    type_into(browser, "msg-to", AU_NUMBER)
    type_into(browser, "msg-body", "b" * 161)  # 2 segments
    click(browser, "#msg-send")
    short = wait_for(browser, lambda d: text(d, "send-short"), "the short send is not explained")
    assert short.startswith(
        "Not enough credits for this message to Australia: it needs 2 credits, and your included and AU credits"
        " hold 0 — 2 short."
    )
    section_shot(browser, "24-insufficient-390", "composer")
    click(browser, "#send-short button")
    wait_for(browser, lambda d: "/dashboard" not in d.current_url, "the buy button opened no checkout")
    assert "Total: $6.20 USD" in browser.page_source and "100 AU SMS credits" in browser.page_source


def test_the_statement_has_one_line_per_message_with_the_running_balance(browser, local_service):
    from selenium.webdriver.common.by import By

    account = local_service.new_account()  # 50 included
    # With the card saved, a send that leaves Australia at 149 (49 included + 100 AU) tops it up.
    set_auto_recharge(local_service, account, regions={"AU": {"packs": 1, "threshold": 149}})
    pay_for_a_pack(local_service, account, SUCCEEDS)

    sign_in(browser, local_service, account)
    type_into(browser, "msg-to", AU_NUMBER)
    type_into(browser, "msg-body", "Your table is ready.")
    click(browser, "#msg-send")

    def rows(d: Any) -> list[Any]:
        return list(d.find_elements(By.CSS_SELECTOR, "#ledger-rows tr"))

    wait_for(
        browser,
        lambda d: (
            any(r.get_attribute("data-kind") == "message" for r in rows(d))
            and "Auto-recharge" in text(d, "ledger-rows")
        ),
        f"no message line and auto-recharge line: {text(browser, 'ledger-rows')}",
    )
    messages = browser.find_elements(By.CSS_SELECTOR, "#ledger-rows tr[data-kind=message]")
    assert len(messages) == 1  # the hold and its post (which moves nothing) are one line
    cells = [str(td.text) for td in messages[0].find_elements(By.TAG_NAME, "td")]
    assert cells[1:] == [
        "Message to +61******678, Australia — sent: 1 credit (1 included)",
        "-1",
        "49 included",
    ]
    assert messages[0].get_attribute("data-status") == "sent"
    purchase_rows = browser.find_elements(By.CSS_SELECTOR, "#ledger-rows tr[data-kind=purchase]")
    purchases = [[str(td.text) for td in row.find_elements(By.TAG_NAME, "td")][1:] for row in purchase_rows]
    assert purchases == [
        ["Auto-recharge — 1 pack, 100 AU credits, $6.20 Receipt", "+100", "200 AU"],
        ["Pack purchased — 100 AU credits, $6.20 Receipt", "+100", "100 AU"],
    ]
    assert "charged" not in text(browser, "ledger-rows")
    # Each purchase links Stripe's receipt (the stand-in's receipt page); no other line has one.
    receipts = [row.find_element(By.CSS_SELECTOR, "a.receipt") for row in purchase_rows]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#ledger-rows a")) == 2
    assert all(r.is_displayed() and r.get_attribute("target") == "_blank" for r in receipts)
    assert all("noopener" in str(r.get_attribute("rel")) for r in receipts)
    section_shot(browser, "25-statement-1280", "statement")
    browser.set_window_size(*PHONE)
    assert "Balance after: 49 included" in text(browser, "ledger-rows")
    assert browser.execute_script(CONTROLS_FIT) == []
    assert all(r.is_displayed() and r.rect["x"] + r.rect["width"] <= PHONE[0] for r in receipts)
    section_shot(browser, "25-statement-390", "statement")

    dashboard = browser.current_window_handle
    click(browser, "#ledger-rows tr[data-kind=purchase] a.receipt")  # the auto-recharge's
    wait_for(browser, lambda d: len(d.window_handles) == 2, "the receipt did not open in a new tab")
    browser.switch_to.window(next(h for h in browser.window_handles if h != dashboard))
    try:
        wait_for(browser, lambda d: "Amount paid" in d.page_source, "the receipt page did not load")
        assert browser.title == "Receipt" and "/__local/stripe/receipts/ch_" in browser.current_url
        assert "$6.20 USD" in browser.page_source and "Visa ending in 4242" in browser.page_source
        assert "Auto-recharge 1 x AU SMS packs" in browser.page_source
    finally:
        browser.close()
        browser.switch_to.window(dashboard)


def legacy_account(service: LocalService) -> str:
    """An account created before the segment model (created_at before 2025-09-01): legacy."""
    account = f"web-legacy-{uuid.uuid4().hex[:8]}"
    body = {
        "account_id": account,
        "plan": "essentials",
        "billing_anchor": "2025-03-01",
        "home_region": "AU",
        "created_at": "2025-03-01T00:00:00Z",
    }
    admin = {"Authorization": f"Bearer {service.token('support', 'admin')}"}
    created = requests.post(f"{service.base_url}/v1/admin/accounts", json=body, headers=admin, timeout=10)
    assert created.status_code == 201, created.text
    return account


def test_a_legacy_account_requests_its_migration_and_support_sees_it(browser, local_service):
    account = legacy_account(local_service)
    sign_in(browser, local_service, account)
    offer = banner(browser, "uses the legacy credit model")
    assert buttons(offer) == ["Request migration"]
    assert "request it here and support is told" in offer.text
    section_shot(browser, "34-legacy-request-1280", "account-state")
    at_phone_width(browser, "34-legacy-request", "account-state")

    browser.set_window_size(*DESKTOP)
    click(browser, "#account-state button")
    requested = banner(browser, "Migration requested on ")
    assert "support will convert your legacy credits" in requested.text and "dry run first" in requested.text
    wait_for(browser, asked_without_a_button, "Request migration is offered again")  # asked once
    assert "support has been told" in text(browser, "notices")
    admin = {"Authorization": f"Bearer {local_service.token('support', 'admin')}"}
    seen = requests.get(f"{local_service.base_url}/v1/admin/accounts/{account}", headers=admin, timeout=10)
    assert seen.status_code == 200 and seen.json()["migration_requested_at"], seen.text
    assert seen.json()["migration_requested_by"] == f"local|{account}"  # the token's subject
    section_shot(browser, "35-legacy-requested-1280", "account-state")

    # A new page load still knows (the balance carries the request) and offers no second request.
    sign_in(browser, local_service, account)
    wait_for(browser, asked_without_a_button, f"the request is not shown as made: {banners(browser)}")
    at_phone_width(browser, "35-legacy-requested", "account-state")


def asked_without_a_button(driver: Any) -> bool:
    """The banners say the migration was requested, and none offers a button (read fresh: never stale)."""
    from selenium.webdriver.common.by import By

    no_button = not driver.find_elements(By.CSS_SELECTOR, "#account-state button")
    return no_button and any("Migration requested on " in words for words in banners(driver))
