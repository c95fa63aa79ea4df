"""When a failed model may be loaded again: exponential backoff and a circuit breaker.

Each failure in a row (a load that failed, a model that died) doubles the wait before
the next try, from ``restart_backoff`` up to ``max_restart_backoff``; after
``max_failures`` in a row the circuit opens and only an explicit load tries again
(which also resets the count). A successful load resets it too.

A remote model's circuit never opens: its server is someone else's and comes back on
its own, and a try costs one health check; its backoff still grows to the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelpool.core.record import ModelRecord
from modelpool.errors import CircuitOpen, LoadFailed


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    restart_backoff: float = 1.0
    max_restart_backoff: float = 60.0
    max_failures: int = 5

    def check(self, record: ModelRecord, now: float, explicit: bool) -> None:
        """Raise unless ``record`` (FAILED) may be loaded now; an explicit load may."""
        reason = record.last_error or "unknown error"
        if explicit:
            record.failures, record.retry_at = 0, 0.0
        elif record.failures >= self.max_failures and not record.spec.remote:
            raise CircuitOpen(record.model_id, reason, record.failures)
        elif now < record.retry_at:
            raise LoadFailed(record.model_id, reason, retry_after=record.retry_at - now)

    def count_failure(self, record: ModelRecord, now: float) -> bool:
        """Note one more failure in a row; True when this one opens the circuit."""
        record.failures += 1
        backoff = self.restart_backoff * 2 ** (record.failures - 1)
        record.retry_at = now + min(self.max_restart_backoff, backoff)
        return record.failures == self.max_failures and not record.spec.remote
