"""Local JWTs: mint one for any account (`python -m local.token ACCOUNT_ID [admin]`) or the SaaS backend's
(`python -m local.token '' service`), and verify them."""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

DEFAULT_SECRET = "local-dev-secret"
DEFAULT_ISSUER = "sms-credits-local"
DEFAULT_AUDIENCE = "sms-credits"
LIFETIME_SECONDS = 24 * 3600


def signing_key() -> str:
    return os.environ.get("LOCAL_JWT_SECRET") or DEFAULT_SECRET


def issuer() -> str:
    """Stands in for the JwtIssuer parameter (the SaaS identity provider's URL in AWS)."""
    return os.environ.get("LOCAL_JWT_ISSUER") or DEFAULT_ISSUER


def audience() -> str:
    """Stands in for the JwtAudience parameter (on AWS read from SSM Parameter Store at deploy time)."""
    return os.environ.get("LOCAL_JWT_AUDIENCE") or DEFAULT_AUDIENCE


def mint(account_id: str, scope: str = "", secret: str | None = None, **overrides: Any) -> str:
    """An HS256 token for `account_id`, valid 24 h; `overrides` replace or add claims (None removes one; the
    account claim is `account_claim`)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": f"local|{account_id}",
        "account_id": account_id,
        "scope": scope,
        "iss": issuer(),
        "aud": audience(),
        "iat": now,
        "exp": now + LIFETIME_SECONDS,
    }
    if "account_claim" in overrides:
        claims["account_id"] = overrides.pop("account_claim")
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    # The product fixes the local default secret at 16 bytes; PyJWT warns about short HMAC keys.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret or signing_key(), algorithm="HS256")


def verify(token: str) -> dict[str, Any]:
    """The token's claims if it is a valid local token; raises jwt.InvalidTokenError otherwise.

    HS256 only (so `alg: none` and every other algorithm is refused); exp, iss, aud and sub are required."""
    return jwt.decode(
        token,
        signing_key(),
        algorithms=["HS256"],
        audience=audience(),
        issuer=issuer(),
        options={"require": ["exp", "iss", "aud", "sub"]},
    )


SERVICE_SUBJECT = "saas-backend"


def service_token(secret: str | None = None) -> str:
    """The SaaS backend's token: the `service` scope and no account claim."""
    return mint(SERVICE_SUBJECT, "service", secret, account_claim=None)


def main(argv: list[str]) -> int:
    """ACCOUNT_ID [SCOPE] (`make token ACCOUNT=<id> [SCOPE=admin]`); SCOPE `service` alone (`make token
    SCOPE=service`) is the SaaS backend's token: no account claim, it names the account in X-Account-Id. An
    empty argument (an unset make variable) counts as absent."""
    account, scope = (*argv, "", "")[:2] if len(argv) <= 2 else ("", "")
    if scope == "service":
        print(service_token())
        return 0
    if not account:
        print(
            "usage: python -m local.token ACCOUNT_ID [SCOPE]   (SCOPE: admin for support routes; or '' service)"
        )
        return 2
    print(mint(account, scope))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
