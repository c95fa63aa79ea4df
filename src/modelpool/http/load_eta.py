"""When a model that a request waited for is expected to serve: a 503's ``Retry-After``.

A request that waited for a load and gave up (its wait timed out, or the queue was
full) is told to come back when the load should be over, not after a fixed guess:
the model's mean measured load time (its first load: its size at an assumed disk
speed, as the policies guess it), less the time the load now under way has run.
"""

from __future__ import annotations

from modelpool.core.events import EventKind
from modelpool.core.pool import ModelPool
from modelpool.core.record import ASSUMED_LOAD_BANDWIDTH
from modelpool.core.states import ModelState

SOONEST = 1.0
"""Seconds: a load that overran its estimate may end any moment."""


def expected_load_seconds(total_seconds: float, loads: int, size: int) -> float:
    """A load's expected length: the mean of those measured, else ``size`` at the
    assumed bandwidth."""
    return total_seconds / loads if loads else size / ASSUMED_LOAD_BANDWIDTH


def seconds_until_loaded(expected: float, started_at: float | None, now: float) -> float:
    """Seconds from ``now`` until a load of ``expected`` seconds that began at
    ``started_at`` (None: not begun yet) should be over; ``SOONEST`` at least."""
    ran = 0.0 if started_at is None else max(0.0, now - started_at)
    return max(SOONEST, expected - ran)


def load_retry_after(pool: ModelPool, model_id: str) -> float | None:
    """Seconds until ``model_id``'s load should be over; None when it is not loading or
    waiting to load (then nothing is known about when it will serve)."""
    state = pool.state(model_id)
    if state not in (ModelState.LOADING, ModelState.UNLOADED):
        return None
    status = pool.get_resource_status()  # walks every model: for an error answer only
    model = status["model_resources"][model_id]
    expected = expected_load_seconds(
        model["load_seconds_total"], model["load_count"], model["memory_bytes"]
    )
    started = _load_started_at(pool, model_id) if state is ModelState.LOADING else None
    return seconds_until_loaded(expected, started, status["clock"])


def _load_started_at(pool: ModelPool, model_id: str) -> float | None:
    """When the load under way began; None while it waits for evictions (or when the
    event has left the history)."""
    for event in reversed(pool.recent_events()):
        if event.model_id != model_id:
            continue
        if event.kind is EventKind.LOAD_STARTED:
            return event.at
        if event.kind in _LOAD_ENDED:
            return None  # an earlier load's end: this one has not begun
    return None


_LOAD_ENDED = frozenset({EventKind.LOADED, EventKind.LOAD_FAILED, EventKind.UNLOADED})
