"""Bad tokens at the local gateway: refused with 401 and the error shape, and never another account's data."""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections.abc import Callable

import jwt
import pytest
import requests
from jwt.warnings import InsecureKeyLengthWarning

from local.token import mint, signing_key
from tests.blackbox.conftest import AU_NUMBER, Api, LocalMode, error_of

pytestmark = pytest.mark.blackbox

# A route of each kind: an account read, a credit-moving write, a support route.
ROUTES = [("GET", "/v1/balance"), ("POST", "/v1/messages"), ("GET", "/v1/admin/accounts/demo-growth/balance")]


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _tampered(token: str, **changes: object) -> str:
    """The same header and signature over an edited payload, as an attacker holding a valid token would try."""
    header, _, signature = token.split(".")
    return ".".join([header, _segment({**_claims(token), **changes}), signature])


def _alg_none(account_id: str) -> str:
    return ".".join([_segment({"alg": "none", "typ": "JWT"}), _segment(_claims(mint(account_id))), ""])


def _signed(claims: dict[str, object], algorithm: str = "HS256") -> str:
    """Properly signed with the gateway's own key."""
    with warnings.catch_warnings():  # the local key is 16 bytes by product decision
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, signing_key(), algorithm=algorithm)


def _without(claim: str) -> str:
    return _signed({k: v for k, v in _claims(mint("demo-starter")).items() if k != claim})


# Refused by the authorizer, before any function runs.
BAD_TOKENS = {
    "another-key": lambda: mint("demo-starter", secret="another-signing-key-of-32-bytes!"),
    "alg-none": lambda: _alg_none("demo-starter"),
    "hs512-right-key": lambda: _signed(_claims(mint("demo-starter")), "HS512"),
    "expired": lambda: mint("demo-starter", iat=int(time.time()) - 7200, exp=int(time.time()) - 60),
    "wrong-audience": lambda: mint("demo-starter", aud="another-api"),
    "no-sub": lambda: _without("sub"),
}
# Valid tokens that name no account: the function refuses them (a support route answers 403 instead,
# since without the admin scope they are simply not support staff).
ACCOUNTLESS_TOKENS = {
    "no-account-claim": lambda: _without("account_id"),
    "empty-account-claim": lambda: _signed({**_claims(mint("demo-starter")), "account_id": ""}),
}


def _call(base_url: str, method: str, path: str, token: str) -> requests.Response:
    body = {"to": AU_NUMBER, "body": "should never be sent"} if method == "POST" else None
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    return requests.request(method, base_url + path, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize("method,path", ROUTES, ids=["balance", "send", "support"])
@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_a_bad_token_is_401_with_the_error_shape(
    local_mode: LocalMode, name: str, method: str, path: str
) -> None:
    answer = _call(local_mode.base_url, method, path, BAD_TOKENS[name]())

    assert answer.status_code == 401, (name, answer.text)
    assert error_of(answer)["code"] == "unauthorized"


@pytest.mark.parametrize("method,path", ROUTES[:2], ids=["balance", "send"])
@pytest.mark.parametrize("name", sorted(ACCOUNTLESS_TOKENS))
def test_a_token_without_an_account_is_401(local_mode: LocalMode, name: str, method: str, path: str) -> None:
    answer = _call(local_mode.base_url, method, path, ACCOUNTLESS_TOKENS[name]())

    assert answer.status_code == 401, (name, answer.text)
    assert error_of(answer)["code"] == "unauthorized"


def test_a_payload_edited_to_another_account_never_reaches_its_data(
    local_mode: LocalMode, new_account: Callable[..., Api]
) -> None:
    victim = new_account()
    attacker = new_account()
    victim_id = str(_claims(str(victim.token))["account_id"])
    sent = victim.send(AU_NUMBER, "Private to its owner")
    assert sent.status_code == 202, sent.text
    before = victim.balance()
    forged = _tampered(str(attacker.token), account_id=victim_id, sub=f"local|{victim_id}")

    reads = [
        _call(local_mode.base_url, "GET", "/v1/balance", forged),
        _call(local_mode.base_url, "GET", f"/v1/messages/{sent.json()['message_id']}", forged),
        _call(local_mode.base_url, "GET", "/v1/ledger", forged),
    ]
    send = _call(local_mode.base_url, "POST", "/v1/messages", forged)

    for answer in [*reads, send]:
        assert answer.status_code == 401 and error_of(answer)["code"] == "unauthorized", answer.text
        assert victim_id not in answer.text
    assert victim.balance() == before  # the forged send moved nothing


def test_a_payload_edited_to_add_the_admin_scope_is_refused(local_mode: LocalMode) -> None:
    forged = _tampered(mint("demo-starter"), scope="admin")

    answer = _call(local_mode.base_url, "GET", "/v1/admin/accounts/demo-growth/balance", forged)

    assert answer.status_code == 401 and error_of(answer)["code"] == "unauthorized"
