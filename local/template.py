"""Read template.yaml: the tables, functions, routes, schedules and parameters the local mode runs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str  # logical id
    authorized: bool


@dataclass(frozen=True)
class Schedule:
    function: str
    expression: str


@cache
def load(path: Path = TEMPLATE) -> dict[str, Any]:
    template, matches = decode(str(path))
    if template is None:
        raise RuntimeError(f"cannot read {path}: {matches}")
    return _plain(template)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in load()["Resources"].items() if res["Type"] == kind}


def table_definitions() -> dict[str, dict[str, Any]]:
    """CreateTable arguments per table logical id, exactly as the template declares them."""
    tables = {}
    for name, res in resources("AWS::DynamoDB::Table").items():
        props = res["Properties"]
        args: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        tables[name] = args
    return tables


def functions() -> dict[str, dict[str, Any]]:
    return resources("AWS::Serverless::Function")


def routes() -> list[Route]:
    found = []
    for name, res in functions().items():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            authorizer = props.get("Auth", {}).get("Authorizer")
            found.append(Route(props["Method"].upper(), props["Path"], name, authorizer != "NONE"))
    return found


def schedules() -> list[Schedule]:
    found = []
    for name, res in functions().items():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] in ("ScheduleV2", "Schedule"):
                found.append(Schedule(name, event["Properties"]["ScheduleExpression"]))
    return found


def function_properties(name: str) -> dict[str, Any]:
    """A function's properties with the template's Globals applied (environment variables merged)."""
    defaults = dict(load().get("Globals", {}).get("Function", {}))
    own = functions()[name]["Properties"]
    merged = {**defaults, **own}
    variables = {
        **defaults.get("Environment", {}).get("Variables", {}),
        **own.get("Environment", {}).get("Variables", {}),
    }
    merged["Environment"] = {"Variables": variables}
    return merged
