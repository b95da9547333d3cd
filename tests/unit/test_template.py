"""template.yaml guards: least-privilege IAM, storage durability, layers, and that every route is served."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.template import ROOT, functions, load, resources, routes
from smscredits.settings import DEFAULT_MESSAGE_RETENTION_DAYS, DEFAULT_SWEEP_GRACE_SECONDS

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
    ((kind, value),) = resource.items()
    if kind == "Fn::GetAtt":
        target = value[0] if isinstance(value, list) else value.split(".")[0]
        return [target]
    if kind == "Ref":
        return [value]
    if kind == "Fn::Sub":
        text = value if isinstance(value, str) else value[0]
        # Allowed: a named secret's version suffix (`-*`) and the objects under a key prefix of one of this
        # template's buckets (`${Bucket.Arn}/prefix/*`: an object ARN has no other form).
        scoped = re.sub(r"^(\$\{\w+Bucket\.Arn\}/[a-z-]+/)\*$", r"\1", text)
        assert "*" not in scoped.replace("-*", ""), f"wildcard in {text}"
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
    # A dynamic reference would put the secret in plaintext in a function's configuration. The one allowed
    # is the SaaS connection's API key: EventBridge keeps a connection's credentials in a secret of its own.
    connection = resources("AWS::Events::Connection")["SaasEventsConnection"]["Properties"]
    allowed = connection["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyValue"]["Fn::Sub"]
    assert text.count("{{resolve:secretsmanager") == 1 and allowed.startswith("{{resolve:secretsmanager:")


def test_functions_skip_pydantics_plugin_scan_on_cold_start():
    assert load()["Globals"]["Function"]["Environment"]["Variables"]["PYDANTIC_DISABLE_PLUGINS"] == "__all__"


def test_the_code_defaults_are_the_templates():
    """One sweep grace default: the template's. PublicBaseUrl is an optional override, empty by default."""
    parameters = load()["Parameters"]
    assert int(parameters["SweepGraceSeconds"]["Default"]) == DEFAULT_SWEEP_GRACE_SECONDS
    assert parameters["PublicBaseUrl"]["Default"] == ""
    assert int(parameters["MessageRetentionDays"]["Default"]) == DEFAULT_MESSAGE_RETENTION_DAYS


def _refs(value: Any) -> set[str]:
    """Every resource or parameter a template value names (Ref, GetAtt, ${...} in Sub)."""
    text = json.dumps(value)
    return (
        set(re.findall(r'"Ref": "(\w+)"', text))
        | set(re.findall(r"\$\{(\w+)", text))
        | set(re.findall(r'"Fn::GetAtt": \["(\w+)"', text))
    )


def test_one_deploy_is_enough():
    """No second pass: no function behind the HTTP API may name the API (SAM's generated API body names every
    such function: a cycle CloudFormation refuses), so they derive the base URL from the request; the
    outputs fall back to the API's own URL; samconfig.toml names no address to hand-edit."""
    api_functions = {route.function for route in routes()}
    template = load()
    assert "HttpApi" not in _refs(template["Globals"])
    for name in api_functions:
        own = {k: v for k, v in functions()[name]["Properties"].items() if k != "Events"}
        assert "HttpApi" not in _refs(own), name
    outputs = template["Outputs"]
    for name in ("TwilioStatusCallbackUrl", "StripeWebhookUrl", "DashboardUrl", "PublicUrl"):
        assert "HttpApi" in _refs(outputs[name]["Value"]) and "PublicBaseUrl" in _refs(outputs[name]["Value"])
    samconfig = (ROOT / "samconfig.toml").read_text()
    assert "example.com" not in samconfig and "PublicBaseUrl=" not in samconfig
    for name in ("JwtIssuer", "JwtAudience"):
        assert template["Parameters"][name]["Type"] == "AWS::SSM::Parameter::Value<String>"


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
        pages = {"/v1/openapi.json", "/v1/docs", "/v1/docs/{asset}", "/dashboard"}
        assert path.startswith("/webhooks/") or path in pages, path


def test_events_fixtures_are_valid_json():
    paths = sorted(Path(ROOT / "events").glob("*.json"))
    assert paths, "no event fixtures found"
    for path in paths:
        assert isinstance(json.loads(path.read_text()), dict), path


# ---- IAM: each service's actions reach only that kind of resource of this template ------------------

RESOURCE_TYPES = {
    "dynamodb": "AWS::DynamoDB::Table",
    "sqs": "AWS::SQS::Queue",
    "events": "AWS::Events::EventBus",
    "sns": "AWS::SNS::Topic",
    "s3": "AWS::S3::Bucket",
}


def test_each_statement_reaches_only_its_own_kind_of_resource():
    template = load()
    for name, function in functions().items():
        for statement in _statements(function):
            services = {action.split(":")[0] for action in _as_list(statement["Action"])}
            assert len(services) == 1, f"{name}: one service per statement keeps this check exact"
            (service,) = services
            for resource in _as_list(statement["Resource"]):
                for target in _resource_targets(resource):
                    if service == "secretsmanager":
                        assert target.endswith("SecretName") and target in template["Parameters"], name
                    else:
                        kind = template["Resources"][target]["Type"]
                        assert kind == RESOURCE_TYPES[service], f"{name}: {service} on {target}"


def test_index_grants_name_indexes_the_table_has():
    for name, function in functions().items():
        for statement in _statements(function):
            for resource in _as_list(statement["Resource"]):
                text = str(resource.get("Fn::Sub", ""))
                if "/index/" not in text:
                    continue
                index = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/(\w+)", text)
                assert index, f"{name}: {text} is not one named index"
                table = load()["Resources"][index.group(1)]["Properties"]
                assert index.group(2) in {i["IndexName"] for i in table["GlobalSecondaryIndexes"]}, name


# ---- every asynchronous invocation and every queue can dead-letter ------------------------------------

ASYNC_EVENTS = {"Schedule", "ScheduleV2", "EventBridgeRule", "CloudWatchEvent", "SNS", "S3", "CloudWatchLogs"}


def _queue_of(arn: Any) -> str:
    (target,) = _resource_targets(arn)
    assert load()["Resources"][target]["Type"] == "AWS::SQS::Queue", target
    return target


def _dead_letter_queues() -> set[str]:
    found = set()
    for queue in resources("AWS::SQS::Queue").values():
        if "RedrivePolicy" in queue["Properties"]:
            found.add(_queue_of(queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]))
    for function in functions().values():
        props = function["Properties"]
        if "DeadLetterQueue" in props:
            found.add(_queue_of(props["DeadLetterQueue"]["TargetArn"]))
        for event in props.get("Events", {}).values():
            if "Arn" in event["Properties"].get("DeadLetterConfig", {}):
                found.add(_queue_of(event["Properties"]["DeadLetterConfig"]["Arn"]))
            on_failure = event["Properties"].get("DestinationConfig", {}).get("OnFailure", {})
            if on_failure.get("Type") == "SQS":
                found.add(_queue_of(on_failure["Destination"]))
    for rule in resources("AWS::Events::Rule").values():
        for target in rule["Properties"].get("Targets", []):
            if "DeadLetterConfig" in target:
                found.add(_queue_of(target["DeadLetterConfig"]["Arn"]))
    return found


def test_every_queue_is_a_dead_letter_queue_or_redrives_to_one():
    dead_letter = _dead_letter_queues()
    for name, queue in resources("AWS::SQS::Queue").items():
        props = queue["Properties"]
        assert name in dead_letter or props["RedrivePolicy"]["maxReceiveCount"] >= 1, name
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, name
        if name in dead_letter:
            assert props["MessageRetentionPeriod"] == 1209600, f"{name}: keep dead letters the full 14 days"


def test_every_asynchronously_invoked_function_has_an_on_failure_target():
    for name, function in functions().items():
        props = function["Properties"]
        events = props.get("Events", {}).values()
        if any(event["Type"] in ASYNC_EVENTS for event in events):
            on_failure = props.get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure")
            assert "DeadLetterQueue" in props or on_failure, f"{name}: failed async invocations are lost"
        for event in events:
            if event["Type"] == "ScheduleV2":
                assert event["Properties"].get("DeadLetterConfig"), f"{name}: failed deliveries are lost"
            if event["Type"] == "SQS":
                source = load()["Resources"][_queue_of(event["Properties"]["Queue"])]
                assert "RedrivePolicy" in source["Properties"], f"{name}: poison messages loop forever"


# ---- alarms --------------------------------------------------------------------------------------------


def _alarms() -> dict[str, dict[str, Any]]:
    return {name: alarm["Properties"] for name, alarm in resources("AWS::CloudWatch::Alarm").items()}


def _watched(namespace: str) -> set[tuple[str, str]]:
    """(metric, first dimension's target) pairs that alarms watch in a namespace."""
    found = set()
    for alarm in _alarms().values():
        if alarm["Namespace"] == namespace:
            value = alarm["Dimensions"][0]["Value"]
            target = value if isinstance(value, str) else _resource_targets(value)[0]
            found.add((alarm["MetricName"], target))
    return found


def test_every_function_has_error_and_throttle_alarms():
    watched = _watched("AWS/Lambda")
    for name in functions():
        assert {("Errors", name), ("Throttles", name)} <= watched, name


def test_every_dead_letter_queue_has_a_depth_alarm():
    watched = _watched("AWS/SQS")
    for queue in _dead_letter_queues():
        assert ("ApproximateNumberOfMessagesVisible", queue) in watched, queue


def test_a_500_the_http_layer_answers_is_alarmed_although_lambda_sees_no_error():
    [alarm] = [a for a in _alarms().values() if a["MetricName"] == "UnhandledError"]
    assert alarm["Namespace"] == "SmsCredits"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"


def test_business_alarms_watch_metrics_the_code_emits():
    code = "\n".join(p.read_text() for p in (ROOT / "layers/core/smscredits").rglob("*.py"))
    watched = {metric for metric, _ in _watched("SmsCredits")}
    assert {"RechargeFailed", "StripeSignatureRejected", "TwilioSignatureRejected"} <= watched
    for metric in watched:
        assert f'count("{metric}"' in code, f"no code emits {metric}"
    for alarm in _alarms().values():
        if alarm["Namespace"] == "SmsCredits":  # Powertools adds the service dimension to every metric
            assert alarm["Dimensions"] == [{"Name": "service", "Value": "sms-credits"}]


def test_alarms_notify_a_topic_cloudwatch_can_encrypt_for():
    for name, alarm in _alarms().items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    topic = load()["Resources"]["AlarmTopic"]["Properties"]
    # The AWS managed alias/aws/sns key cannot grant CloudWatch, so alarms on such a topic never arrive.
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    key = load()["Resources"]["AlarmTopicKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch = {"Service": "cloudwatch.amazonaws.com"}
    grants = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == cloudwatch]
    assert grants and set(grants[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert load()["Resources"]["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


def test_outputs_give_the_operator_every_url_to_register():
    assert {"ApiUrl", "StripeWebhookUrl", "TwilioStatusCallbackUrl", "DashboardUrl"} <= set(load()["Outputs"])


def test_every_checkov_skip_is_justified_next_to_its_resource():
    for name, resource in load()["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), name
            assert len(skip.get("comment", "")) >= 40, f"{name}: say why {skip['id']} does not apply"
