"""`make check-ledger STACK=<name>` (python -m local.check_ledger --stack): the deployed stack's table found from its
outputs and checked as locally; here against moto's CloudFormation and DynamoDB (the same botocore calls)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.session import get_session
from moto import mock_aws

from local import check_ledger
from smscredits.adapters.dynamo.ledger import DynamoLedger
from tests.conftest import Clock, new_account

REGION = "ap-southeast-2"
STACK = "sms-credits-dev"
# The credits table's keys and the output make check-ledger reads, as template.yaml declares them.
TEMPLATE = {
    "Resources": {
        "CreditsTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
            },
        }
    },
    "Outputs": {"CreditsTableName": {"Value": {"Ref": "CreditsTable"}}},
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        session = get_session()
        stacks = session.create_client("cloudformation", region_name=REGION)
        stacks.create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE))
        yield session.create_client("dynamodb", region_name=REGION)


def table_name(client: Any) -> str:
    [name] = client.list_tables()["TableNames"]
    return str(name)


def test_a_sound_stack_ledger_is_ok(aws, capsys, clock: Clock):
    ledger = DynamoLedger(table_name(aws), client=aws, clock=clock)
    for account_id in ("acct-1", "acct-2"):
        ledger.create_account(new_account(account_id), reference={})
    assert check_ledger.main(["--stack", STACK, "--region", REGION]) == 0
    out = capsys.readouterr().out
    assert "acct-1: 1 entries, 0 holds: ok" in out and out.rstrip().endswith("ledger ok")


def test_a_pool_that_disagrees_with_its_entries_is_reported(aws, capsys, clock: Clock):
    table = table_name(aws)
    DynamoLedger(table, client=aws, clock=clock).create_account(new_account("acct-1"), reference={})
    aws.update_item(
        TableName=table,
        Key={"pk": {"S": "ACCT#acct-1"}, "sk": {"S": "ACCOUNT"}},
        UpdateExpression="SET pools.#pool = :credits",
        ExpressionAttributeNames={"#pool": "included"},
        ExpressionAttributeValues={":credits": {"N": "55"}},
    )
    assert check_ledger.main(["--stack", STACK, "--region", REGION, "acct-1"]) == 1
    out = capsys.readouterr().out
    assert "acct-1: 1 entries, 0 holds: PROBLEMS" in out and "1 problem(s)" in out


def test_a_stack_that_does_not_exist_is_a_clear_refusal(aws, capsys):
    assert check_ledger.main(["--stack", "nope", "--region", REGION]) == 2
    assert "cannot find the table of stack nope" in capsys.readouterr().out
