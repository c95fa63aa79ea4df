"""The wait queue: requests that wait for their model, bounded, in swap-aware order.

Each model's waiters live on its record, in arrival order; this class keeps the
bound across all models and decides which model's queue is served first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from modelpool.core.lease import Waiter
from modelpool.core.record import ModelRecord
from modelpool.errors import QueueFull


class WaitQueue:
    """At most ``limit`` waiting requests over all models."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def push(self, record: ModelRecord, waiter: Waiter) -> None:
        if self.count >= self.limit:
            raise QueueFull(record.model_id, self.limit)
        record.waiters.append(waiter)
        self.count += 1

    def remove(self, record: ModelRecord, waiter: Waiter) -> bool:
        """Take one waiter out (it gave up); False if it was no longer waiting."""
        if waiter not in record.waiters:
            return False
        record.waiters.remove(waiter)
        self.count -= 1
        return True

    def take_all(self, record: ModelRecord) -> deque[Waiter]:
        """Every waiter of ``record``, in arrival order, leaving its queue empty."""
        waiters, record.waiters = record.waiters, deque()
        self.count -= len(waiters)
        return waiters

    def put_back(self, record: ModelRecord, waiters: deque[Waiter]) -> None:
        """Return ``waiters`` (taken by ``take_all``, still in order) to the front of
        ``record``'s queue: they keep their place ahead of any that came since."""
        self.count += len(waiters)
        waiters.extend(record.waiters)
        record.waiters = waiters

    @staticmethod
    def in_order(records: Iterable[ModelRecord]) -> list[ModelRecord]:
        """Models with waiters, the one whose most important request is most important
        first, then the one whose oldest request is oldest. A model is planned once for
        its whole queue, which is what groups A B A B into A A B B."""
        queued = [r for r in records if r.waiters]
        queued.sort(key=lambda r: (min(w.priority for w in r.waiters), r.waiters[0].enqueued_at))
        return queued

    @staticmethod
    def waited(record: ModelRecord, now: float) -> float:
        """How long the oldest request for ``record`` has waited."""
        return now - record.waiters[0].enqueued_at if record.waiters else 0.0
