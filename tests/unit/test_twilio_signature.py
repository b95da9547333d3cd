"""Our X-Twilio-Signature check agrees with the Twilio SDK's RequestValidator, which stays the oracle."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from smscredits.adapters.twilio_signature import compute_signature, is_valid

TOKEN = "12345678901234567890123456789012"
urls = st.sampled_from(
    [
        "https://api.example.com/webhooks/twilio/status?account_id=a&message_id=msg_1",
        "https://api.example.com:443/webhooks/twilio/status?account_id=a",
        "http://127.0.0.1:3000/webhooks/twilio/status?account_id=acct-1&message_id=m",
        "https://api.example.com/webhooks/twilio/status",
    ]
)
params = st.dictionaries(
    st.sampled_from(["MessageSid", "MessageStatus", "To", "From", "ErrorCode", "AccountSid", "Body"]),
    st.text(max_size=30),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(url=urls, form=params)
def test_a_signature_from_the_sdk_is_accepted_and_matches_ours(url, form):
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    assert is_valid(TOKEN, url, form, signature)
    assert RequestValidator(TOKEN).validate(url, form, compute_signature(TOKEN, url, form))


@settings(max_examples=300, deadline=None)
@given(url=urls, form=params, signature=st.text(max_size=40))
def test_we_refuse_exactly_what_the_sdk_refuses(url, form, signature):
    assert is_valid(TOKEN, url, form, signature) == RequestValidator(TOKEN).validate(url, form, signature)


def test_tampering_with_any_part_is_refused():
    url = "https://api.example.com/webhooks/twilio/status?account_id=a&message_id=m"
    form = {"MessageSid": "SM1", "MessageStatus": "failed"}
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    assert is_valid(TOKEN, url, form, signature)
    assert not is_valid(TOKEN, url.replace("message_id=m", "message_id=n"), form, signature)
    assert not is_valid(TOKEN, url, {**form, "MessageStatus": "delivered"}, signature)
    assert not is_valid("another-token-000000000000000000", url, form, signature)
    assert not is_valid(TOKEN, url.replace("api.example.com", "evil.example.com"), form, signature)
    assert not is_valid(TOKEN, url, form, "")
