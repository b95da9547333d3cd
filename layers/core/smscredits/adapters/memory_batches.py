"""The BatchMessages and BatchQueue ports in memory, with DynamoDB's rules (each move conditional on the
record's status, a callback on its SID and recorded Twilio status): for use-case tests and local tools."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from smscredits.domain import batches as B


class InMemoryBatchMessages:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, dict[int, dict[str, Any]]] = {}
        self.requests = 0  # write requests a DynamoDB store would make (the bench compares them)

    def write_all(self, batch: B.Batch, messages: Sequence[B.Planned]) -> None:
        with self._lock:
            records = self._records.setdefault(batch.batch_id, {})
            for message in messages:
                records[message.position] = B.queued_record(batch, message)
            self.requests += (len(messages) + 24) // 25

    def read(self, batch_id: str, indexes: Sequence[int]) -> list[dict[str, Any]]:
        with self._lock:
            records = self._records.get(batch_id, {})
            return [dict(records[index]) for index in indexes if index in records]

    def move(
        self, batch_id: str, moves: Sequence[tuple[int, str, Mapping[str, Any]]], expected: str
    ) -> list[int]:
        with self._lock:
            records = self._records.get(batch_id, {})
            moved = []
            for index, status, fields in moves:
                record = records.get(index)
                if record is not None and record["status"] == expected and "swept" not in record:
                    record.update(fields, status=status)
                    moved.append(index)
            self.requests += 1 if len(moved) == len(moves) else 1 + len(moves)
            return moved

    def callback(
        self, batch_id: str, index: int, status: str, sid: str, settled: Iterable[str]
    ) -> tuple[bool, str | None]:
        with self._lock:
            self.requests += 1
            record = self._records.get(batch_id, {}).get(index)
            if record is None:
                return False, None
            if (
                record["status"] not in (B.DISPATCHING, B.SENT)
                or record.get("sid") not in (None, sid)
                or record.get("provider_status") in set(settled)
            ):
                return False, record.get("swept")
            record.update(status=B.record_status(status), provider_status=status, sid=sid)
            return True, record.get("swept")

    def sweep(self, batch: B.Batch) -> int:
        with self._lock:
            marked = 0
            for record in self._records.get(batch.batch_id, {}).values():
                mark = B.sweep_mark(record)
                if mark is not None:
                    record["swept"] = mark
                    marked += 1
                    self.requests += 1
            return marked

    def all(self, batch: B.Batch) -> Iterator[dict[str, Any]]:
        with self._lock:
            records = self._records.get(batch.batch_id, {})
            return iter([dict(records[index]) for index in sorted(records)])

    def page(
        self, batch: B.Batch, *, after: int, limit: int, status: str | None
    ) -> tuple[list[dict[str, Any]], int | None]:
        chosen = [
            r for r in self.all(batch) if r["index"] > after and (status is None or r["status"] == status)
        ]
        page = chosen[:limit]
        return page, (page[-1]["index"] if len(chosen) > limit else None)


class InMemoryBatchQueue:
    """Jobs in order of sending; `drain` hands them to a worker (delays are not waited for)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.jobs: list[tuple[dict[str, Any], int]] = []

    def send(self, jobs: Sequence[tuple[Mapping[str, Any], int]]) -> None:
        with self._lock:
            self.jobs.extend((dict(job), delay) for job, delay in jobs)

    def take(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The oldest `limit` jobs (all by default), removed from the queue."""
        with self._lock:
            cut = len(self.jobs) if limit is None else limit
            taken, self.jobs = [job for job, _ in self.jobs[:cut]], self.jobs[cut:]
            return taken
