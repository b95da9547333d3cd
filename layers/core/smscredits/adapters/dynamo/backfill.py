"""One-off: give every ledger entry written before LedgerByTime existed its `ledger_at`, so statements (which
read that index) show the whole ledger. Run once after the deploy that adds the index; a repeat finds nothing
to do (each update is conditional on the attribute being absent)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from smscredits.adapters.dynamo.codec import LEDGER_PREFIX, ledger_at
from smscredits.adapters.dynamo.values import to_value


def backfill_ledger_time(client: Any, table: str) -> int:
    """Set `ledger_at` on every ledger entry that lacks it; returns how many were set."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "begins_with(sk, :prefix) AND attribute_not_exists(ledger_at)",
        "ExpressionAttributeValues": {":prefix": to_value(LEDGER_PREFIX)},
        "ProjectionExpression": "pk, sk, created_at",
    }
    updated = 0
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            _, version, index = item["sk"]["S"].split("#")
            try:
                client.update_item(
                    TableName=table,
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    UpdateExpression="SET ledger_at = :at",
                    ConditionExpression="attribute_exists(pk) AND attribute_not_exists(ledger_at)",
                    ExpressionAttributeValues={
                        ":at": to_value(ledger_at(item["created_at"]["S"], int(version), int(index)))
                    },
                )
                updated += 1
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
        if "LastEvaluatedKey" not in page:
            return updated
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
