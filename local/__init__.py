"""The one-machine runner: moto, a local HTTP API gateway, timers and Twilio/Stripe stand-ins. Not deployed."""

import os
import sys
from pathlib import Path

# On Lambda the core layer is on every function's path (/opt/python); locally it is layers/core.
_CORE_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "core")
if _CORE_LAYER not in sys.path:
    sys.path.append(_CORE_LAYER)


def run_file() -> Path:
    """Where a running local mode writes its URLs, so `python -m local.check_ledger` can find its moto."""
    return Path(
        os.environ.get("LOCAL_RUN_FILE") or Path(__file__).resolve().parent.parent / ".local-run.json"
    )
