"""The ledger check: every pool equals the sum of its entries, and held credits equal the open holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from smscredits.domain.account import Account, Hold, LedgerRecord


def check_account(account: Account, entries: Iterable[LedgerRecord], holds: Iterable[Hold]) -> list[str]:
    """Every inconsistency found, in plain words; an empty list means the account is sound."""
    problems: list[str] = []
    sums: dict[str, int] = defaultdict(int)
    for entry in sorted(entries, key=_position):
        sums[entry.pool] += entry.amount
        if sums[entry.pool] != entry.balance_after:
            problems.append(
                f"{account.account_id}: entry {entry.entry_id} says {entry.pool} = {entry.balance_after}, "
                f"the entries before it sum to {sums[entry.pool]}"
            )
    for pool in sorted(set(sums) | set(account.pools)):
        balance = account.pools.get(pool, 0)
        if balance < 0:
            problems.append(f"{account.account_id}: pool {pool} is negative ({balance})")
        if balance != sums.get(pool, 0):
            problems.append(
                f"{account.account_id}: pool {pool} = {balance} but its entries sum to {sums.get(pool, 0)}"
            )
    open_credits = sum(hold.credits for hold in holds if hold.status == "pending")
    if account.held != open_credits:
        problems.append(f"{account.account_id}: held = {account.held} but open holds total {open_credits}")
    if account.held < 0:
        problems.append(f"{account.account_id}: held is negative ({account.held})")
    return problems


def _position(entry: LedgerRecord) -> tuple[int, int]:
    """Entries are ordered by the balance version that wrote them, then by their index in that write."""
    version, index = entry.entry_id.rsplit(":", 2)[1:]
    return int(version), int(index)
