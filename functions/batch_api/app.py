"""Batch API function: quote, create, read, list the messages of and cancel batches (docs/product.md §8b)."""

from __future__ import annotations

from typing import Any

from smscredits.api import batch_routes
from smscredits.api.http import Api
from smscredits.observability import instrument

app = Api(batch_routes.router)


@instrument
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
