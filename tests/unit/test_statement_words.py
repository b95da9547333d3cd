"""The statement's words for the late charge and its repayment: plain words, never the ledger's kind code."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smscredits.domain.account import LedgerRecord
from smscredits.domain.ledger import INCLUDED, OWED
from smscredits.services.statements import describe


def entry(kind: str, pool: str, amount: int) -> LedgerRecord:
    return LedgerRecord(
        entry_id="e1",
        account_id="acct-1",
        kind=kind,
        pool=pool,
        amount=amount,
        balance_after=0,
        created_at=datetime(2026, 11, 28, tzinfo=UTC),
        op_id="op",
        reference={"message_id": "msg-1"},
    )


@pytest.mark.parametrize(
    ("kind", "pool", "amount", "words"),
    [
        (
            "late_charge",
            INCLUDED,
            -1,
            "Charged late (a message sent after its credits came back) — 1 credit from included",
        ),
        (
            "late_charge",
            "purchased:AU",
            -2,
            "Charged late (a message sent after its credits came back) — 2 credits from AU",
        ),
        (
            "late_charge",
            OWED,
            3,
            "Charged late, no credits left to take — 3 credits owed, taken from the next credits added",
        ),
        ("repayment", "purchased:AU", -3, "Owed credits repaid from AU — 3 credits"),
        ("repayment", OWED, -3, "Owed credits repaid — 3 credits"),
    ],
)
def test_a_late_charge_and_its_repayment_are_described_in_words(
    kind: str, pool: str, amount: int, words: str
) -> None:
    assert describe(entry(kind, pool, amount)) == words
