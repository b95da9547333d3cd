"""The send path end to end through the handlers (API Gateway v2 events from events/), moto and the real
Twilio SDK over a recording HTTP client."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from smscredits import runtime
from smscredits.domain.audit import check_account
from smscredits.services import settlement
from tests.conftest import RequestCounter
from tests.functions import Context, call, event, load_function, user
from tests.integration.conftest import PUBLIC_URL, TWILIO_TOKEN, FakeTwilioHttp, create, service_ledger

AU = "+61491570110"


def send(
    body: str = "Hello from the shop", to: str = AU, key: str = "k1", account: str = "acct-1"
) -> tuple[int, Any]:
    return call(
        "send",
        "send_post_message",
        body={"to": to, "body": body},
        headers={"idempotency-key": key},
        claims=user(account),
    )


def balance(account: str = "acct-1") -> dict[str, Any]:
    status, answer = call("account_api", "account_get_balance", claims=user(account))
    assert status == 200
    return answer


def audit(account: str = "acct-1") -> list[str]:
    return check_account(*runtime.container().statements.partition(account))


def callback(
    twilio: FakeTwilioHttp,
    status: str,
    *,
    signature: str | None = None,
    index: int = -1,
    sid: str | None = None,
) -> tuple[int, Any]:
    """Twilio's signed status callback for the index-th message sent (its own SID unless `sid` is given)."""
    url = twilio.callback_url(index)
    sid = sid or twilio.sid(index)
    params = {"MessageSid": sid, "MessageStatus": status, "To": AU, "AccountSid": "AC" + "1" * 32}
    if status == "failed":
        params["ErrorCode"] = "30006"
    signed = (
        signature if signature is not None else RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    )
    query = url.split("?", 1)[1]
    return call(
        "twilio_status",
        "twilio_status_delivered",
        body=urlencode(params),
        headers={"x-twilio-signature": signed},
        query=dict(pair.split("=") for pair in query.split("&")),
    )


def test_send_holds_sends_through_twilio_and_posts(service, twilio: FakeTwilioHttp):
    create()
    status, answer = send()
    assert status == 202
    assert answer["status"] == "sent"
    assert answer["funding"] == [{"pool": "included", "credits": 1}]
    assert (answer["segments"], answer["credits"], answer["encoding"], answer["region"]) == (
        1,
        1,
        "GSM-7",
        "AU",
    )
    assert balance()["included"]["available"] == 49 and balance()["held"] == 0
    sent = twilio.sent[0]["data"]
    assert sent["To"] == AU and sent["Body"] == "Hello from the shop"
    assert sent["StatusCallback"].startswith(f"{PUBLIC_URL}/webhooks/twilio/status?")
    assert answer["message_id"] in sent["StatusCallback"]
    kinds = [e["kind"] for e in call("account_api", "account_get_ledger", claims=user())[1]["entries"]]
    assert kinds == ["post", "hold", "grant"]
    assert audit() == []


def test_trailing_whitespace_is_trimmed_before_counting_and_sending(service, twilio):
    create()
    _, answer = send("a" * 160 + "  \n\n ")
    assert answer["segments"] == 1
    assert twilio.sent[0]["data"]["Body"] == "a" * 160


def test_warm_send_costs_two_transactions_one_dispatch_mark_and_no_reads(service, twilio, dynamodb):
    create()
    send(key="warm-up")
    counter = RequestCounter(dynamodb)
    send(key="measured")
    # hold, the hold marked as handed to Twilio (its item alone, not the balance), post
    assert counter.calls == ["TransactWriteItems", "UpdateItem", "TransactWriteItems"]
    assert counter.reads == 0


def test_same_key_and_body_replays_without_second_send_or_debit(service, twilio):
    create()
    first = send(key="order-1")
    second = send(key="order-1")
    assert first == second
    assert len(twilio.sent) == 1
    assert balance()["included"]["available"] == 49


def test_same_key_with_another_body_is_refused(service, twilio):
    create()
    send(key="order-1")
    status, answer = send("Something else", key="order-1")
    assert status == 422 and answer["error"]["code"] == "idempotency_key_reused"
    assert len(twilio.sent) == 1 and balance()["included"]["available"] == 49


def test_missing_idempotency_key_is_refused_and_writes_nothing(service, twilio, dynamodb):
    create()
    before = dynamodb.scan(TableName="CreditsTable")["Count"]
    status, answer = call(
        "send",
        "send_post_message",
        body={"to": AU, "body": "hi"},
        claims=user(),
        headers={"idempotency-key": ""},
    )
    assert status == 400 and answer["error"]["code"] == "idempotency_key_required"
    assert dynamodb.scan(TableName="CreditsTable")["Count"] == before and twilio.sent == []


@pytest.mark.parametrize(
    ("to", "body", "status", "code"),
    [
        (AU, "   \n\t ", 422, "empty_body"),
        (AU, "", 422, "empty_body"),
        (AU, "a" * 1601, 422, "body_too_long"),
        ("+6112", "hi", 422, "invalid_number"),
        ("not a number", "hi", 422, "invalid_number"),
        ("+14165550123", "hi", 422, "unsupported_region"),
        ("+33612345678", "hi", 422, "unsupported_region"),
        # Nothing a person could see: billed and sent before (issue 12).
        (AU, "\x00", 422, "empty_body"),
        (AU, "\x00\x00 \x00", 422, "empty_body"),
        (AU, "\u200b\u200c\u200d\u2060\ufeff", 422, "empty_body"),
        (AU, "\u3164\u115f \u2800", 422, "empty_body"),
        # One '+', digits, no extension: accepted (the extension silently dropped) before.
        ("++61491570110", "hi", 422, "invalid_number"),
        ("+61491570110 ext. 5", "hi", 422, "invalid_number"),
        ("+61491570110;ext=1", "hi", 422, "invalid_number"),
        ("+61491570110 x5", "hi", 422, "invalid_number"),
        ("+١٢٠٢٥٥٥٠١٢٣", "hi", 422, "invalid_number"),
        # Numbers an SMS cannot reach: premium rate, shared cost, toll-free, landlines of AU and NZ.
        ("+611900123456", "hi", 422, "invalid_number"),
        ("+611300123456", "hi", 422, "invalid_number"),
        ("+611800123456", "hi", 422, "invalid_number"),
        ("+61290001234", "hi", 422, "invalid_number"),
        ("+19005550123", "hi", 422, "invalid_number"),
        ("+449012345678", "hi", 422, "invalid_number"),
        ("+64900123456", "hi", 422, "invalid_number"),
        ("+6493001234", "hi", 422, "invalid_number"),
    ],
)
def test_bad_messages_are_refused_with_their_code_and_write_nothing(
    service, twilio, dynamodb, to, body, status, code
):
    create()
    before = dynamodb.scan(TableName="CreditsTable")["Items"]
    got, answer = send(body, to=to)
    assert got == status and answer["error"]["code"] == code
    assert set(answer["error"]) == {"code", "message", "details"}
    assert dynamodb.scan(TableName="CreditsTable")["Items"] == before and twilio.sent == []


def test_control_characters_in_a_body_are_refused_with_their_positions(service, twilio, dynamodb):
    create()
    before = dynamodb.scan(TableName="CreditsTable")["Items"]
    status, answer = send("Hi\x00 there\x1b[31m\nline two\tok\r\n\x7f")
    assert status == 422 and answer["error"]["code"] == "invalid_request"
    assert answer["error"]["details"] == {
        "body": "control characters",
        "positions": [2, 9, 28],
        "characters": ["U+0000", "U+001B", "U+007F"],
    }
    assert dynamodb.scan(TableName="CreditsTable")["Items"] == before and twilio.sent == []


@pytest.mark.parametrize(
    ("to", "number_type"),
    [("+611900123456", "premium_rate"), ("+611300123456", "shared_cost"), ("+61290001234", "fixed_line")],
)
def test_a_number_an_sms_cannot_reach_is_refused_by_quote_and_send_saying_why(
    service, twilio, to, number_type
):
    create()
    for got, answer in (
        call("account_api", "account_post_quote", body={"to": to, "body": "hi"}, claims=user()),
        send(to=to),
    ):
        assert got == 422 and answer["error"]["code"] == "invalid_number"
        assert answer["error"]["details"] == {
            "to": "not_sms_capable",
            "region": "AU",
            "number_type": number_type,
            "sms_capable_types": ["mobile", "fixed_line_or_mobile"],
        }
    assert twilio.sent == []


def test_the_quote_refuses_what_the_send_refuses(service, twilio):
    create()
    for to, body, code in (
        (AU, "\u200b", "empty_body"),
        ("++61491570110", "hi", "invalid_number"),
        ("+61491570110 ext. 5", "hi", "invalid_number"),
        (AU, "a\x07", "invalid_request"),
    ):
        status, answer = call(
            "account_api", "account_post_quote", body={"to": to, "body": body}, claims=user()
        )
        assert (status, answer["error"]["code"]) == (422, code), (to, body)


@pytest.mark.parametrize(
    "to",
    [AU, "+61 491 570 110", "+12025550123", "+18005550123", "+447400123456", "+442079460123", "+64211234567"],
)
def test_numbers_an_sms_reaches_and_readable_bodies_are_sent(service, twilio, to):
    create()
    status, answer = send("Family 👨\u200d👩\u200d👧 ready,\r\n\tsee you ✔\ufe0f", to=to)
    assert status == 202 and answer["status"] == "sent", answer
    assert len(twilio.sent) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{not json", 400),
        ('{"to": "+61491570110"}', 422),
        ('{"to": 5, "body": "x"}', 422),
        ('{"to": "+61491570110", "body": "x", "extra": 1}', 422),
        ("[]", 422),
        ("null", 422),
    ],
)
def test_malformed_requests_get_the_error_shape(service, twilio, body, status):
    create()
    got, answer = call(
        "send", "send_post_message", body=body, claims=user(), headers={"idempotency-key": "x"}
    )
    assert got == status and answer["error"]["code"] == "invalid_request"
    assert twilio.sent == []


def test_insufficient_credits_is_402_with_the_pools_and_nothing_taken(service, twilio):
    create()
    call("account_api", "account_get_balance", claims=user())
    for n in range(50):
        assert send(key=f"k{n}")[0] == 202
    status, answer = send(key="k50")
    assert status == 402 and answer["error"]["code"] == "insufficient_credits"
    assert answer["error"]["details"]["needed"] == 1
    assert answer["error"]["details"]["pools"] == {"included": 0, "purchased:AU": 0}
    assert len(twilio.sent) == 50 and audit() == []


def test_twilio_rejection_voids_and_says_why(service, twilio):
    create()
    twilio.mode = "reject"
    status, answer = send()
    assert status == 202 and answer["status"] == "rejected"
    assert "unsubscribed" in answer["detail"]
    assert balance()["included"]["available"] == 50 and balance()["held"] == 0
    _, message = call(
        "account_api",
        "account_get_message",
        claims=user(),
        path=f"/v1/messages/{answer['message_id']}",
        path_params={"message_id": answer["message_id"]},
    )
    assert message["billing"] == "returned" and message["error"]["error_code"] == 21610
    assert audit() == []


def test_ambiguous_twilio_failure_keeps_the_hold_then_the_callback_settles_it(service, twilio):
    create()
    twilio.mode = "timeout"
    status, answer = send()
    assert status == 202 and answer["status"] == "pending"
    assert len(twilio.sent) == 1
    assert balance()["held"] == 1
    assert send()[1]["status"] == "pending" and len(twilio.sent) == 1  # a retry never re-sends
    assert callback(twilio, "delivered")[0] == 200
    assert balance()["held"] == 0 and balance()["included"]["available"] == 49
    assert audit() == []


def test_connect_timeout_means_not_sent_and_voids(service, twilio):
    create()
    twilio.mode = "connect_timeout"
    _, answer = send()
    assert answer["status"] == "rejected"
    assert balance()["included"]["available"] == 50 and balance()["held"] == 0


def test_sweeper_voids_holds_whose_callback_never_came(service, twilio):
    clock = service
    create()
    twilio.mode = "timeout"
    send()
    sweeper = load_function("sweeper")
    assert sweeper.lambda_handler(event("scheduler_sweep"), Context()) == {"voided": 0, "already_ended": 0}
    clock.advance(seconds=3600 + 1)
    assert sweeper.lambda_handler(event("scheduler_sweep"), Context()) == {"voided": 1, "already_ended": 0}
    assert balance()["included"]["available"] == 50 and balance()["held"] == 0
    assert sweeper.lambda_handler(event("scheduler_sweep"), Context()) == {"voided": 0, "already_ended": 0}
    assert audit() == []


def test_failed_callback_after_posting_refunds_once(service, twilio):
    create()
    send()
    assert balance()["included"]["available"] == 49
    status, answer = callback(twilio, "failed")
    assert status == 200 and answer["outcome"] == "refunded"
    assert balance()["included"]["available"] == 50
    assert callback(twilio, "failed")[1]["outcome"] == "unchanged"
    assert callback(twilio, "delivered")[1]["outcome"] == "unchanged"  # late and out of order
    assert balance()["included"]["available"] == 50
    assert audit() == []


def message(message_id: str) -> dict[str, Any]:
    status, answer = call(
        "account_api",
        "account_get_message",
        claims=user(),
        path=f"/v1/messages/{message_id}",
        path_params={"message_id": message_id},
    )
    assert status == 200
    return answer


def test_undelivered_stays_charged_and_statuses_only_move_forward(service, twilio):
    create()
    _, sent = send()
    assert callback(twilio, "sent")[1]["outcome"] == "status recorded"
    assert callback(twilio, "queued")[1]["outcome"] == "unchanged"  # late, out of order
    assert message(sent["message_id"])["provider_status"] == "sent"
    assert callback(twilio, "undelivered")[1]["outcome"] == "status recorded"
    shown = message(sent["message_id"])
    assert (shown["provider_status"], shown["billing"]) == ("undelivered", "charged")
    assert balance()["included"]["available"] == 49


@pytest.mark.parametrize("final", ["delivered", "undelivered"])
def test_a_final_status_is_final_and_a_later_failed_refunds_nothing(service, twilio, final):
    create()
    _, sent = send()
    assert callback(twilio, final)[1]["outcome"] == "status recorded"
    other_final = "undelivered" if final == "delivered" else "delivered"
    for later in ("failed", "canceled", other_final, "sent"):
        assert callback(twilio, later) == (200, {"outcome": "unchanged"}), later
    shown = message(sent["message_id"])
    assert (shown["status"], shown["billing"], shown["provider_status"]) == ("sent", "charged", final)
    assert balance()["included"]["available"] == 49 and audit() == []


def test_a_final_status_that_comes_before_the_sends_answer_is_final_too(service, twilio):
    create()
    twilio.mode = "timeout"  # Twilio took the message; its answer was lost, so the hold is still pending
    _, sent = send()
    assert callback(twilio, "undelivered")[1]["outcome"] == "posted"
    assert callback(twilio, "failed")[1]["outcome"] == "unchanged"
    shown = message(sent["message_id"])
    assert (shown["billing"], shown["provider_status"]) == ("charged", "undelivered")
    assert balance()["included"]["available"] == 49 and balance()["held"] == 0 and audit() == []


def test_failed_after_a_status_that_is_not_final_still_refunds(service, twilio):
    create()
    send()
    assert callback(twilio, "sent")[1]["outcome"] == "status recorded"
    assert callback(twilio, "failed")[1]["outcome"] == "refunded"
    assert balance()["included"]["available"] == 50 and audit() == []


def test_racing_final_statuses_settle_one_way_only(service, twilio, dynamodb):
    """undelivered and failed for the same message at once, from separate instances: whichever lands first
    is final; the other changes nothing. Threads against moto (locked per request); each has its own store."""
    create()
    messages = [send(key=f"race-{n}")[1]["message_id"] for n in range(12)]
    charged = 0
    for message_id in messages:
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def settle(
            status: str,
            message_id: str = message_id,
            barrier: threading.Barrier = barrier,
            outcomes: dict[str, str] = outcomes,
        ) -> None:
            store = service_ledger(dynamodb, service)
            sid = store.get_hold("acct-1", message_id).provider["sid"]
            barrier.wait()
            outcomes[status] = settlement.settle_status(
                store, account_id="acct-1", message_id=message_id, status=status, sid=sid, error_code=None
            )

        threads = [threading.Thread(target=settle, args=(status,)) for status in ("undelivered", "failed")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        shown = message(message_id)
        if shown["billing"] == "charged":
            charged += 1
            assert outcomes == {"undelivered": "status recorded", "failed": "unchanged"}
            assert shown["provider_status"] == "undelivered"
        else:
            assert outcomes == {"undelivered": "unchanged", "failed": "refunded"}
            assert (shown["billing"], shown["provider_status"]) == ("refunded", "failed")
    assert balance()["included"]["available"] == 50 - charged and audit() == []


def test_racing_progress_statuses_keep_the_furthest(service, twilio, dynamodb):
    """sent and delivered at once: delivered is kept whichever lands last, so a later failed changes nothing."""
    create()
    messages = [send(key=f"progress-{n}")[1]["message_id"] for n in range(12)]
    for message_id in messages:
        barrier = threading.Barrier(2)

        def settle(status: str, message_id: str = message_id, barrier: threading.Barrier = barrier) -> None:
            store = service_ledger(dynamodb, service)
            sid = store.get_hold("acct-1", message_id).provider["sid"]
            barrier.wait()
            settlement.settle_status(
                store, account_id="acct-1", message_id=message_id, status=status, sid=sid, error_code=None
            )

        threads = [threading.Thread(target=settle, args=(status,)) for status in ("delivered", "sent")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert message(message_id)["provider_status"] == "delivered"
    assert balance()["included"]["available"] == 50 - 12 and audit() == []


def test_a_callback_carrying_another_messages_sid_is_refused_and_moves_nothing(
    service, twilio, dynamodb, caplog
):
    create()
    _, first = send(key="first")
    send(key="second")
    before = dynamodb.scan(TableName="CreditsTable")["Items"]
    for status in ("failed", "delivered", "sent"):
        code, answer = callback(twilio, status, index=0, sid=twilio.sid(1))
        assert code == 409 and answer["error"]["code"] == "sid_mismatch", answer
        assert answer["error"]["details"] == {"message_id": first["message_id"]}
    assert dynamodb.scan(TableName="CreditsTable")["Items"] == before
    assert balance()["included"]["available"] == 48
    assert any(r.levelname == "WARNING" and "MessageSid" in r.getMessage() for r in caplog.records)


def test_a_sid_first_seen_in_a_callback_is_recorded_and_another_refused_later(service, twilio):
    create()
    twilio.mode = "timeout"  # Twilio took it (it has a SID); its answer never reached us
    send()
    assert callback(twilio, "sent")[1]["outcome"] == "posted"
    code, answer = callback(twilio, "failed", sid="SM" + "0" * 32)
    assert code == 409 and answer["error"]["code"] == "sid_mismatch"
    assert balance()["included"]["available"] == 49
    assert callback(twilio, "failed")[1]["outcome"] == "refunded"
    assert balance()["included"]["available"] == 50 and audit() == []


def test_a_callback_without_a_message_sid_is_refused(service, twilio, dynamodb):
    create()
    send()
    url = twilio.callback_url()
    params = {"MessageStatus": "failed", "AccountSid": "AC" + "1" * 32}
    before = dynamodb.scan(TableName="CreditsTable")["Items"]
    status, answer = call(
        "twilio_status",
        "twilio_status_delivered",
        body=urlencode(params),
        headers={"x-twilio-signature": RequestValidator(TWILIO_TOKEN).compute_signature(url, params)},
        query=dict(pair.split("=") for pair in url.split("?", 1)[1].split("&")),
    )
    assert status == 400 and answer["error"]["code"] == "invalid_request"
    assert dynamodb.scan(TableName="CreditsTable")["Items"] == before


def test_callback_with_bad_or_missing_signature_is_refused_and_changes_nothing(service, twilio, dynamodb):
    create()
    send()
    before = dynamodb.scan(TableName="CreditsTable")["Items"]
    for signature in ("", "bm90IHRoZSBzaWduYXR1cmU="):
        status, answer = callback(twilio, "failed", signature=signature)
        assert status == 403 and answer["error"]["code"] == "forbidden"
    assert dynamodb.scan(TableName="CreditsTable")["Items"] == before


def test_callback_signed_over_another_host_is_refused(service, twilio):
    create()
    send()
    url = twilio.callback_url().replace(PUBLIC_URL, "https://evil.example.com")
    params = {"MessageSid": "SM1", "MessageStatus": "failed"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    assert callback(twilio, "failed", signature=signature)[0] == 403
    assert balance()["included"]["available"] == 49


def test_quote_and_send_agree(service, twilio):
    create()
    for n, body in enumerate(["Hi", "a" * 161, "Café ☕ today?", "€" * 80, "😀" * 40]):
        _, quote = call("account_api", "account_post_quote", body={"to": AU, "body": body}, claims=user())
        _, sent = send(body, key=f"agree-{n}")
        for field in ("segments", "encoding", "credits", "funding", "region"):
            assert quote[field] == sent[field], (body, field)


def test_quote_reports_smart_encoding_and_non_gsm_characters(service, twilio):
    create()
    status, quote = call(
        "account_api", "account_post_quote", body={"to": AU, "body": "It’s “great”"}, claims=user()
    )
    assert status == 200
    assert quote["encoding"] == "UCS-2" and quote["non_gsm_characters"] == ["’", "“", "”"]
    assert quote["smart_encoding"] == {"encoding": "GSM-7", "segments": 1, "applied": False}
    assert quote["affordable"] is True and balance()["included"]["available"] == 50


def test_quote_explains_the_segment_fill_and_what_replacing_the_ucs2_characters_saves(service, twilio):
    create()
    body = "It’s “great” " + "a" * 60 + " 😀"  # 76 UTF-16 units: two UCS-2 parts (67 + 9)

    status, quote = call("account_api", "account_post_quote", body={"to": AU, "body": body}, claims=user())

    assert status == 200
    assert (quote["encoding"], quote["segments"], quote["credits"], quote["units"]) == ("UCS-2", 2, 2, 76)
    assert (quote["segment_capacity"], quote["last_segment_units"], quote["last_segment_units_left"]) == (
        67,
        9,
        58,
    )
    assert [(r["character"], r["replacement"]) for r in quote["replacements"]] == [
        ("’", "'"),
        ("“", '"'),
        ("”", '"'),
        ("😀", ""),
    ]
    assert quote["replacements"][0]["code_point"] == "U+2019"
    assert quote["replacements"][3]["name"] == "GRINNING FACE"
    # It's "great" + 60 a: 73 septets once the emoji is gone and the space before it trimmed.
    assert quote["if_replaced"] == {"encoding": "GSM-7", "segments": 1, "credits": 1}
    assert quote["smart_encoding"]["applied"] is False
    assert balance()["included"]["available"] == 50


def test_quote_of_gsm_text_or_of_nothing_but_emoji_offers_no_replacement(service, twilio):
    create()
    for body, fill in (("a" * 161, (153, 8, 145)), ("😀😀", (70, 4, 66))):
        status, quote = call(
            "account_api", "account_post_quote", body={"to": AU, "body": body}, claims=user()
        )
        assert status == 200
        assert (
            quote["segment_capacity"],
            quote["last_segment_units"],
            quote["last_segment_units_left"],
        ) == fill
        assert quote["if_replaced"] is None


def test_a_failed_callback_that_overtakes_the_send_returns_the_credits_once(service, twilio):
    create()

    def fail_first(data: dict[str, Any]) -> None:
        query = dict(pair.split("=") for pair in data["StatusCallback"].split("?", 1)[1].split("&"))
        settlement.settle_status(
            runtime.container().ledger,
            account_id=query["account_id"],
            message_id=query["message_id"],
            status="failed",
            sid=twilio.sid(),
            error_code="30006",
        )

    twilio.on_request = fail_first
    status, answer = send()
    assert status == 202 and answer["status"] == "failed"
    assert balance()["included"]["available"] == 50 and balance()["held"] == 0
    assert audit() == []
