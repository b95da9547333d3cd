"""The CustomerDirectory port in memory (tests): the same first-link-wins rule as DynamoDB's."""

from __future__ import annotations

import threading


class InMemoryCustomers:
    def __init__(self) -> None:
        self._accounts: dict[str, str] = {}
        self._lock = threading.Lock()

    def account_for(self, customer_id: str) -> str | None:
        return self._accounts.get(customer_id)

    def link(self, customer_id: str, account_id: str) -> str:
        with self._lock:
            return self._accounts.setdefault(customer_id, account_id)
