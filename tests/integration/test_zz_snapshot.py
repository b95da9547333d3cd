"""Temporary: record every route's answers (status, headers, body) to compare the old and new HTTP layers."""
import json, os
from tests.functions import Context, admin, event, load_function, user
from tests.integration.conftest import create
from tests.integration.stripe_support import stripe_api, sign, stripe_event, WEBHOOK_SECRET  # noqa
from tests.integration.test_send_path import AU

OUT = os.environ.get("SNAPSHOT_OUT", "/tmp/i19/snap.json")

def run(fn, fixture, **changes):
    r = load_function(fn).lambda_handler(event(fixture, **changes), Context())
    headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
    body = r.get("body")
    if "json" in headers.get("content-type", "") and body:
        body = json.loads(body)
    return {"status": r["statusCode"], "content-type": headers.get("content-type"),
            "other_headers": sorted(k for k in headers if k != "content-type"), "body": body}

def test_snapshot(service, twilio, stripe_api):
    out = {}
    def rec(name, *a, **k): out[name] = run(*a, **k)
    rec("create", "account_api", "admin_post_account", body={"account_id": "acct-1", "plan": "starter", "billing_anchor": "2026-01-05", "home_region": "AU"}, claims=admin())
    rec("create-bad-date", "account_api", "admin_post_account", body={"account_id": "acct-2", "plan": "starter", "billing_anchor": "x", "home_region": "AU"}, claims=admin())
    rec("create-user", "account_api", "admin_post_account", body={"account_id": "acct-2", "plan": "starter", "billing_anchor": "2026-01-05", "home_region": "AU"}, claims=user())
    rec("create-exists", "account_api", "admin_post_account", body={"account_id": "acct-1", "plan": "starter", "billing_anchor": "2026-01-05", "home_region": "AU"}, claims=admin())
    rec("balance", "account_api", "account_get_balance", claims=user())
    rec("balance-noauth", "account_api", "account_get_balance", claims=None)
    rec("quote", "account_api", "account_post_quote", claims=user(), body={"to": AU, "body": "hello"})
    rec("quote-bad", "account_api", "account_post_quote", claims=user(), body={"to": 5, "body": "hello", "x": 1})
    rec("quote-badjson", "account_api", "account_post_quote", claims=user(), body="{nope")
    rec("quote-list", "account_api", "account_post_quote", claims=user(), body="[]")
    rec("quote-null", "account_api", "account_post_quote", claims=user(), body="null")
    rec("quote-empty", "account_api", "account_post_quote", claims=user(), body=None)
    rec("quote-invalid-number", "account_api", "account_post_quote", claims=user(), body={"to": "+6112", "body": "x"})
    rec("send", "send", "send_post_message", claims=user(), body={"to": AU, "body": "hello"}, headers={"idempotency-key": "k1"})
    rec("send-replay", "send", "send_post_message", claims=user(), body={"to": AU, "body": "hello"}, headers={"idempotency-key": "k1"})
    rec("send-reuse", "send", "send_post_message", claims=user(), body={"to": AU, "body": "bye"}, headers={"idempotency-key": "k1"})
    rec("send-nokey", "send", "send_post_message", claims=user(), body={"to": AU, "body": "hello"}, headers={"idempotency-key": ""})
    rec("send-longkey", "send", "send_post_message", claims=user(), body={"to": AU, "body": "hello"}, headers={"idempotency-key": "K" * 300})
    rec("send-bad", "send", "send_post_message", claims=user(), body={"to": AU}, headers={"idempotency-key": "k2"})
    rec("send-form", "send", "send_post_message", claims=user(), body="to=x&body=y", headers={"idempotency-key": "k3", "content-type": "application/x-www-form-urlencoded"})
    rec("send-text", "send", "send_post_message", claims=user(), body="hello", headers={"idempotency-key": "k3", "content-type": "text/plain"})
    msg = out["send"]["body"]["message_id"]
    rec("message", "account_api", "account_get_message", claims=user(), path=f"/v1/messages/{msg}", path_params={"message_id": msg})
    rec("message-missing", "account_api", "account_get_message", claims=user(), path="/v1/messages/msg_nope", path_params={"message_id": "msg_nope"})
    rec("ledger", "account_api", "account_get_ledger", claims=user())
    rec("ledger-limit", "account_api", "account_get_ledger", claims=user(), query={"limit": "1"})
    rec("ledger-badlimit", "account_api", "account_get_ledger", claims=user(), query={"limit": "0"})
    rec("ledger-strlimit", "account_api", "account_get_ledger", claims=user(), query={"limit": "abc"})
    rec("ledger-badkind", "account_api", "account_get_ledger", claims=user(), query={"kind": "nope"})
    rec("ledger-from", "account_api", "account_get_ledger", claims=user(), query={"from": "2026-01-01", "to": "2026-12-31"})
    rec("ledger-badcursor", "account_api", "account_get_ledger", claims=user(), query={"cursor": "zzz"})
    rec("ledger-csv", "account_api", "account_get_ledger", claims=user(), path="/v1/ledger.csv")
    rec("packs", "account_api", "account_get_packs", claims=user())
    rec("ar-get", "account_api", "account_get_auto_recharge", claims=user())
    rec("ar-put", "account_api", "account_put_auto_recharge", claims=user(), body={"enabled": True, "regions": {"AU": {"packs": 1, "threshold": 10}}, "monthly_cap_cents": 5000})
    rec("ar-put-bad", "account_api", "account_put_auto_recharge", claims=user(), body={"enabled": True, "regions": {}})
    rec("checkout", "checkout", "checkout_post_session", claims=user(), body={"region": "AU", "quantity": 2}, headers={"idempotency-key": "c1"})
    rec("checkout-nokey", "checkout", "checkout_post_session", claims=user(), body={"region": "AU", "quantity": 2}, headers={"idempotency-key": ""})
    rec("checkout-bad", "checkout", "checkout_post_session", claims=user(), body={"region": "FR", "quantity": 0}, headers={"idempotency-key": "c2"})
    base = dict(claims=admin(), path_params={"account_id": "acct-1"})
    rec("plan", "account_api", "admin_post_account", body={"plan": "growth"}, method="PUT", path="/v1/admin/accounts/acct-1/plan", **base)
    rec("plan-badpath", "account_api", "admin_post_account", body={"plan": "growth"}, method="PUT", path="/v1/admin/accounts/a%23b/plan", claims=admin(), path_params={"account_id": "a#b"})
    rec("adjust", "account_api", "admin_post_account", body={"pool": "purchased:AU", "credits": 5, "reason": "x"}, path="/v1/admin/accounts/acct-1/adjustments", headers={"idempotency-key": "a1"}, **base)
    rec("adjust-nokey", "account_api", "admin_post_account", body={"pool": "purchased:AU", "credits": 5, "reason": "x"}, path="/v1/admin/accounts/acct-1/adjustments", **base)
    rec("migrate", "account_api", "admin_post_account", body={"dry_run": True}, path="/v1/admin/accounts/acct-1/migration", **base)
    rec("admin-balance", "account_api", "account_get_balance", method="GET", path="/v1/admin/accounts/acct-1/balance", **base)
    rec("admin-balance-missing", "account_api", "account_get_balance", method="GET", path="/v1/admin/accounts/acct-9/balance", claims=admin(), path_params={"account_id": "acct-9"})
    rec("notfound", "account_api", "account_get_balance", claims=user(), path="/v1/nothing")
    rec("wrongmethod", "account_api", "account_get_balance", claims=user(), method="DELETE")
    rec("docs", "account_api", "account_get_balance", claims=None, path="/v1/docs")
    rec("dashboard", "account_api", "account_get_balance", claims=None, path="/dashboard")
    body = json.dumps(stripe_event("stripe_checkout_session_completed"))
    rec("stripe", "stripe_webhook", "stripe_webhook_post", body=body, headers={"stripe-signature": sign(body)})
    rec("stripe-badsig", "stripe_webhook", "stripe_webhook_post", body=body, headers={"stripe-signature": "t=1,v1=00"})
    rec("stripe-customer", "stripe_webhook", "stripe_webhook_post", body=json.dumps(stripe_event("stripe_customer_created")), headers={"stripe-signature": sign(json.dumps(stripe_event("stripe_customer_created")))})
    rec("twilio-badsig", "twilio_status", "twilio_status_delivered")
    openapi = run("account_api", "account_get_balance", claims=None, path="/v1/openapi.json")
    out["openapi-paths"] = {p: sorted(ops) for p, ops in openapi["body"]["paths"].items()}
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True, default=str)
    json.dump(openapi["body"], open(OUT + ".openapi.json", "w"), indent=1)
