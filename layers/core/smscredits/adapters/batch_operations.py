"""The Ledger port's batch operations, written once for both ledgers: the one reservation, a settlement, the
cancel flag and the dispatch flag. Each is a Change of domain/batches.py through the ledger's commit (the
reservation and settlements move credits, so they are pinned to the balance version) or a single write."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from smscredits.domain import batches as B
from smscredits.domain import ledger as L
from smscredits.domain.changes import BatchCancel, BatchDispatch, Change, Committed, Record, Refused
from smscredits.domain.errors import IdempotencyKeyReused, NotFound
from smscredits.observability import count as metric

if TYPE_CHECKING:
    from smscredits.domain.account import Account
    from smscredits.services.ports import Clock

# A settlement is refused only when another settlement of the same batch landed first: it is read again and
# computed again. More misses than this means something else writes the batch: a bug, not contention.
SETTLE_ATTEMPTS = 8


class BatchOperations:
    clock: Clock

    @abstractmethod
    def find_batch(self, account_id: str, batch_id: str) -> B.Batch | None: ...

    @abstractmethod
    def _commit(self, account_id: str, build: Callable[[Account], Change]) -> Committed | Refused: ...

    @abstractmethod
    def _write(self, record: Record) -> Refused | None: ...

    def get_batch(self, account_id: str, batch_id: str) -> B.Batch:
        batch = self.find_batch(account_id, batch_id)
        if batch is None:
            raise NotFound(f"Batch {batch_id} does not exist.", {"batch_id": batch_id})
        return batch

    def reserve_batch(
        self,
        account_id: str,
        plan: B.Plan,
        *,
        batch_id: str,
        request_hash: str,
        attempt_id: str,
        rate: float = 0.0,
    ) -> tuple[B.Batch, bool]:
        """Reserve a batch's valid messages in one write: (batch, created by this call). The same id with
        another request is idempotency_key_reused; short pools raise InsufficientCredits (nothing written)."""

        def build(state: Account) -> Change:
            return B.reserve(
                state,
                plan,
                batch_id=batch_id,
                request_hash=request_hash,
                now=self.clock(),
                attempt_id=attempt_id,
                rate=rate,
            )

        existing = self.find_batch(account_id, batch_id)
        if existing is None:
            outcome = self._commit(account_id, build)
            if isinstance(outcome, Committed):
                return outcome.change.result, True
            existing = self.get_batch(account_id, batch_id)
        if existing.request_hash != request_hash:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different batch.", {"batch_id": batch_id}
            )
        return existing, existing.attempt_id == attempt_id

    def settle_batch(
        self, account_id: str, batch_id: str, count: Callable[[B.Batch], tuple[Mapping[str, B.Settled], bool]]
    ) -> tuple[B.Batch, bool]:
        """Settle what `count` finds final (cumulative per region, and whether all is final): (the batch after,
        whether this call ended it). Nothing is written when no counter moves and the batch does not end; on an
        ended batch only a refund or a late charge can move one. A late charge is counted as a single send's
        (LateCharges, CreditsOwed) by the write that lands it, so racing callers count it once."""
        for _ in range(SETTLE_ATTEMPTS):
            batch = self.get_batch(account_id, batch_id)
            counted, complete = count(batch)
            ends = complete and batch.status == "open"
            if not ends and not B.advances(batch, counted):
                return batch, False
            outcome = self._commit(account_id, self._settlement(batch, counted, complete))
            if isinstance(outcome, Committed):
                late = [e for e in outcome.change.movement.entries if e.kind == "late_charge"]
                if late:
                    metric("LateCharges")
                    metric("CreditsOwed", sum(e.amount for e in late if e.pool == L.OWED))
                after: B.Batch = outcome.change.result
                return after, ends
        raise RuntimeError(f"Batch {batch_id} kept changing under its settlement.")

    def _settlement(
        self, batch: B.Batch, counted: Mapping[str, B.Settled], complete: bool
    ) -> Callable[[Account], Change]:
        return lambda state: B.settle(state, batch, counted, now=self.clock(), complete=complete)

    def cancel_batch(self, account_id: str, batch_id: str) -> tuple[B.Batch, bool]:
        """Ask an open batch to stop: (the batch, whether this call asked). A second cancel changes nothing."""
        batch = self.get_batch(account_id, batch_id)
        if batch.status != "open" or batch.cancel_requested:
            return batch, False
        refused = self._write(BatchCancel(account_id, batch_id))
        return self.get_batch(account_id, batch_id), refused is None

    def start_dispatch(self, account_id: str, batch_id: str) -> bool:
        """Note that the batch's messages are written and queued; False when it already was."""
        return self._write(BatchDispatch(account_id, batch_id)) is None
