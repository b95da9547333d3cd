"""What each function must not import when it loads (its cold start): the list per function, checked in a fresh
interpreter that loads functions/<name>/app.py as Lambda does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.functions import ROOT

# Nothing of ours creates a boto3 client or imports Powertools' event handler (our own api/http.py routes);
# Powertools' parameters utility imports boto3 too (secrets are read through our botocore client).
EVERY_FUNCTION = (
    "boto3",
    "s3transfer",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.parameters",
)
FORBIDDEN = {
    "send": (
        *EVERY_FUNCTION,
        "stripe",
        "twilio",
    ),  # Twilio's SDK loads on the first send, Stripe's on a recharge
    "account_api": (*EVERY_FUNCTION, "stripe", "twilio"),
    "twilio_status": (*EVERY_FUNCTION, "stripe", "twilio"),  # the signature check is ours
    "checkout": (*EVERY_FUNCTION, "twilio"),
    "stripe_webhook": (*EVERY_FUNCTION, "twilio"),
    "refresh": EVERY_FUNCTION,
    "refresh_worker": EVERY_FUNCTION,
    "status_worker": (*EVERY_FUNCTION, "stripe", "twilio"),
    "sweeper": EVERY_FUNCTION,
    "outbox_publisher": (*EVERY_FUNCTION, "stripe", "twilio"),
    "batch_api": (*EVERY_FUNCTION, "stripe", "twilio"),
    "batch_worker": (*EVERY_FUNCTION, "stripe", "twilio"),  # Twilio's SDK loads on the first slice
}


def test_every_function_has_a_list():
    assert set(FORBIDDEN) == {path.parent.name for path in (ROOT / "functions").glob("*/app.py")}


@pytest.mark.parametrize("function", sorted(FORBIDDEN))
def test_loading_a_function_imports_none_of_its_forbidden_packages(function):
    code = (
        "import json, sys; sys.path[:0] = ['layers/core', '.']; from tests.functions import load_function; "
        f"load_function({function!r}); print(json.dumps(sorted(sys.modules)))"
    )
    env = {"AWS_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    loaded = set(json.loads(result.stdout))
    assert not {
        name for name in loaded if name.split(".")[0] in FORBIDDEN[function] or name in FORBIDDEN[function]
    }
    pulled = sorted(
        p for p in FORBIDDEN[function] if p in loaded or any(m.startswith(p + ".") for m in loaded)
    )
    assert pulled == [], f"{function} imports {pulled} at load time"
