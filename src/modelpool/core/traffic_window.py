"""The pool's recent traffic: what ``strategy: auto`` replays to pick a strategy.

A bounded record of requests, oldest first: when each was served, for which model, and
how long its lease was held. Two bounds hold together: requests older than ``span``
seconds are forgotten, and at most ``max_requests`` are kept (the most recent). Each
record is O(1) amortised: one append, and the pops of what fell out of the window.

Written on the pool's loop (its release path); read by copying (``arrivals``), so a
replay on another thread works on its own list.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from modelpool.types import ModelId


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request as the window remembers it."""

    at: float
    """Pool clock seconds when its lease was granted (a request that waited came in
    earlier by its wait: the replay sees it that much later)."""
    model_id: ModelId
    held: float
    """Seconds the lease was held: the model's service time for this request."""


class TrafficWindow:
    """The last ``span`` seconds of requests, at most ``max_requests`` of them."""

    def __init__(self, span: float = 3600.0, max_requests: int = 100_000) -> None:
        if span <= 0 or max_requests < 1:
            raise ValueError(
                f"traffic window: span must be > 0 and max_requests >= 1, "
                f"got {span!r} and {max_requests!r}"
            )
        self.span = span
        self.max_requests = max_requests
        self._arrivals: deque[Arrival] = deque(maxlen=max_requests)

    def record(self, model_id: ModelId, at: float, held: float) -> None:
        """A request for ``model_id`` served at ``at`` held its lease ``held`` seconds."""
        self._arrivals.append(Arrival(at, model_id, max(0.0, held)))
        self._forget_before(at - self.span)

    def arrivals(self, now: float) -> list[Arrival]:
        """The requests of the last ``span`` seconds before ``now``, oldest first."""
        cutoff = now - self.span
        self._forget_before(cutoff)
        # Leases come back out of order: the deque is nearly sorted, not quite.
        return sorted((a for a in self._arrivals if a.at >= cutoff), key=lambda a: a.at)

    def __len__(self) -> int:
        return len(self._arrivals)

    def _forget_before(self, cutoff: float) -> None:
        arrivals = self._arrivals
        while arrivals and arrivals[0].at < cutoff:
            arrivals.popleft()
