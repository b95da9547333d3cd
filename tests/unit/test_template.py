"""template.yaml guards: least-privilege IAM, storage durability, layers, and that every route is served."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.template import ROOT, functions, load, routes

OWN_RESOURCE = re.compile(r"\$\{(\w+)(\.Arn)?\}")
ALLOWED_MANAGED_POLICIES: set[str] = set()


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in function["Properties"].get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            found.extend(policy["Statement"])
        elif isinstance(policy, dict):
            name = next(iter(policy))
            assert name in ALLOWED_MANAGED_POLICIES, f"SAM policy template {name} is broader than we allow"
        else:
            pytest.fail(f"managed policy {policy} is not least privilege")
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resource_targets(resource: Any) -> list[str]:
    """The template resources (or parameters) an IAM Resource entry points at."""
    if isinstance(resource, str):
        pytest.fail(f"plain resource string {resource!r}: scope it to a resource of this template")
    (kind, value), = resource.items()
    if kind == "Fn::GetAtt":
        target = value[0] if isinstance(value, list) else value.split(".")[0]
        return [target]
    if kind == "Ref":
        return [value]
    if kind == "Fn::Sub":
        text = value if isinstance(value, str) else value[0]
        assert "*" not in text.replace("-*", ""), f"wildcard in {text}"
        names = [m.group(1) for m in OWN_RESOURCE.finditer(text) if not m.group(1).startswith("AWS")]
        assert names, f"{text} names no resource of this template"
        return names
    pytest.fail(f"unexpected resource form {resource}")


@pytest.mark.parametrize("name", sorted(functions()))
def test_every_function_has_least_privilege(name: str):
    template = load()
    known = set(template["Resources"]) | set(template.get("Parameters", {}))
    statements = _statements(functions()[name])
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{name}: wildcard action {action}"
        for resource in _as_list(statement["Resource"]):
            for target in _resource_targets(resource):
                assert target in known, f"{name}: {target} is not this project's resource"


def test_secret_access_is_scoped_to_named_secrets():
    for name, function in functions().items():
        for statement in _statements(function):
            if any(a.startswith("secretsmanager:") for a in _as_list(statement["Action"])):
                assert _as_list(statement["Action"]) == ["secretsmanager:GetSecretValue"], name
                for resource in _as_list(statement["Resource"]):
                    assert re.search(r":secret:\$\{\w+SecretName\}-\*$", resource["Fn::Sub"]), name


def test_no_secret_values_in_the_template():
    text = (ROOT / "template.yaml").read_text()
    assert not re.search(r"(sk_live|sk_test|whsec_|AC[0-9a-f]{32})", text)
    assert "{{resolve:secretsmanager" not in text  # plaintext in the function configuration


def test_tables_are_durable():
    for name, resource in load()["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        assert resource["DeletionPolicy"] == "Retain" and resource["UpdateReplacePolicy"] == "Retain", name
        props = resource["Properties"]
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert props["DeletionProtectionEnabled"] == {"Fn::If": ["IsProd", True, False]}, name
        assert props["TimeToLiveSpecification"]["Enabled"] is True, name


def test_core_layer_is_built_for_python313_arm64():
    layer = load()["Resources"]["CoreLayer"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    assert load()["Globals"]["Function"]["Runtime"] == "python3.13"
    assert load()["Globals"]["Function"]["Architectures"] == ["arm64"]


def test_every_route_has_a_handler_module():
    for route in routes():
        code = functions()[route.function]["Properties"]["CodeUri"]
        assert (ROOT / code / "app.py").exists(), route


def test_webhooks_skip_the_jwt_authorizer_and_nothing_else_private_does():
    public = {route.path for route in routes() if not route.authorized}
    assert {"/webhooks/twilio/status"} <= public
    for path in public:
        assert path.startswith("/webhooks/") or path in {"/v1/openapi.json", "/v1/docs", "/dashboard"}, path


def test_events_fixtures_are_valid_json():
    for path in Path(ROOT / "events").glob("*.json"):
        json.loads(path.read_text())
