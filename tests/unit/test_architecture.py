"""Dependencies point one way: functions → api → services → domain, and adapters implement the services'
ports. Checked on every module's imports (module level and inside functions), read with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.functions import ROOT

PACKAGE = ROOT / "layers" / "core" / "smscredits"
PROVIDERS = ("boto3", "botocore", "aws_lambda_powertools", "stripe", "twilio", "requests")
NOT_IN_DOMAIN = (
    "smscredits.services",
    "smscredits.adapters",
    "smscredits.api",
    "smscredits.schemas",
    "smscredits.runtime",
    "smscredits.settings",
    "smscredits.observability",
    "pydantic",
    *PROVIDERS,
)
NOT_IN_SERVICES = (
    "smscredits.adapters",
    "smscredits.runtime",
    "smscredits.api",
    "smscredits.settings",
    *PROVIDERS,
)
NOT_IN_ADAPTERS = ("smscredits.api", "smscredits.runtime")
# Reads of the clock, randomness and ids: the domain is handed them, so the same inputs give the same answer.
IMPURE_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "sleep"),
    ("uuid", "uuid4"),
}


def modules(layer: str) -> list[Path]:
    found = sorted((PACKAGE / layer).rglob("*.py"))
    assert found, layer
    return found


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(path: Path, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        name
        for name in imported(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
        and not any(name == a or name.startswith(a + ".") for a in allowed)
    )


@pytest.mark.parametrize("path", modules("domain"), ids=lambda p: p.name)
def test_the_domain_imports_nothing_but_the_domain_and_pure_libraries(path: Path):
    assert offending(path, NOT_IN_DOMAIN) == []


@pytest.mark.parametrize("path", modules("domain"), ids=lambda p: p.name)
def test_the_domain_reads_no_clock_and_makes_no_ids(path: Path):
    calls = [
        (node.func.value.id, node.func.attr)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
    ]
    assert [call for call in calls if call in IMPURE_CALLS] == []


@pytest.mark.parametrize("path", modules("services"), ids=lambda p: p.name)
def test_services_reach_the_world_only_through_their_ports(path: Path):
    assert offending(path, NOT_IN_SERVICES) == []


@pytest.mark.parametrize("path", modules("services"), ids=lambda p: p.name)
def test_services_build_no_dynamodb_request(path: Path):
    text = path.read_text()
    assert [word for word in ("TableName", "UpdateExpression", "boto") if word in text] == []


@pytest.mark.parametrize("path", modules("adapters"), ids=lambda p: p.name)
def test_adapters_implement_ports_and_call_no_use_case(path: Path):
    assert (
        offending(path, (*NOT_IN_ADAPTERS, "smscredits.services"), allowed=("smscredits.services.ports",))
        == []
    )


def test_the_checks_see_a_forbidden_import(tmp_path: Path):
    module = tmp_path / "leaky.py"
    module.write_text("def f():\n    from smscredits.adapters.dynamo import codec\n    import boto3\n")
    assert offending(module, NOT_IN_SERVICES) == [
        "boto3",
        "smscredits.adapters.dynamo",
        "smscredits.adapters.dynamo.codec",
    ]
