"""The CustomerDirectory port on DynamoDB: one item per Stripe customer naming its account, written once."""

from __future__ import annotations

from typing import Any

from smscredits.adapters.dynamo import codec as C
from smscredits.adapters.dynamo.client import dynamodb_client
from smscredits.adapters.dynamo.values import from_item, to_value


class DynamoCustomers:
    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    def account_for(self, customer_id: str) -> str | None:
        answer = self.client.get_item(
            TableName=self.table, Key=C.customer_key(customer_id), ConsistentRead=True
        )
        return str(from_item(answer["Item"])["account_id"]) if "Item" in answer else None

    def link(self, customer_id: str, account_id: str) -> str:
        item = {
            **C.customer_key(customer_id),
            "type": to_value("customer"),
            "account_id": to_value(account_id),
        }
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            linked = self.account_for(customer_id)
            assert linked is not None  # an item is never deleted
            return linked
        return account_id
