"""docs/integration.md as printed: its `bash` blocks, in order, in one shell, against a local mode of their own;
then what they did, read back through the API and the ledger check."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
import requests

from local.token import mint
from tests.blackbox.conftest import ROOT
from tests.blackbox.test_billing_lifecycle import ledger_ok
from tests.local_mode import LocalMode, start, stop

pytestmark = pytest.mark.blackbox

DOC = ROOT / "docs" / "integration.md"
BLOCK = re.compile(r"^```bash\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text())


@pytest.fixture(scope="module")
def doc_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    mode = start(tmp_path_factory.mktemp("doc-mode"), LOCAL_SCHEDULES="off")
    try:
        yield mode
    finally:
        assert stop(mode, timeout=20) == 0, mode.output()[-4000:]


def service_scope_works(base_url: str) -> bool:
    """Whether this build lets a `service` token name its account in X-Account-Id (docs/product.md §9)."""
    answer = requests.get(
        f"{base_url}/v1/balance",
        headers={"Authorization": f"Bearer {mint('my-backend', 'service')}", "X-Account-Id": "demo-starter"},
        timeout=10,
    )
    return answer.status_code == 200 and answer.json().get("account_id") == "demo-starter"


def test_the_doc_has_its_sections_and_examples():
    text = DOC.read_text()
    for heading in (
        "## Batches",
        "Map your plans to Stripe prices",
        "Send from your backend",
        "Card on file",
        "Events",
    ):
        assert heading in text
    assert len(blocks()) >= 7


def test_the_integration_guide_runs_as_printed(doc_mode: LocalMode):
    runnable = blocks()
    with_service = service_scope_works(doc_mode.base_url)
    if not with_service:
        runnable = [block for block in runnable if "X-Account-Id" not in block]
    script = "set -euo pipefail\n" + "\n".join(runnable)
    ran = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env={"BASE": doc_mode.base_url, "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    admin = {"Authorization": f"Bearer {mint('support', 'admin')}"}
    balance = requests.get(
        f"{doc_mode.base_url}/v1/admin/accounts/acme-dental/balance", headers=admin, timeout=10
    ).json()
    assert (balance["plan"], balance["included"]["allowance"]) == ("growth", 100)
    owner = {"Authorization": f"Bearer {mint('acme-dental')}"}
    assert requests.get(f"{doc_mode.base_url}/v1/auto-recharge", headers=owner, timeout=10).json()[
        "card_on_file"
    ]
    refreshed = requests.get(
        f"{doc_mode.base_url}/__local/events",
        params={"detail_type": "allowance.refreshed", "account_id": "acme-dental"},
        timeout=10,
    ).json()["events"]
    assert len(refreshed) == 1
    ledger_ok(doc_mode, "acme-dental")
    if not with_service:
        pytest.skip(
            "this build has no `service` scope with X-Account-Id yet: the guide's backend send was not run"
        )
