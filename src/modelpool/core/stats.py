"""Per-model counters: what the seeds' status reports and the policies read."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

FREQUENCY_HALF_LIFE = 600.0
"""Seconds after which a request counts half as much in ``frequency`` (cost_aware, LFU-like)."""

RESPONSE_WINDOW = 1024
"""Response times kept for averages and percentiles (a sliding window, not all of history)."""


def decayed(count: float, counted_at: float, now: float) -> float:
    """``count`` aged from ``counted_at`` to ``now`` with ``FREQUENCY_HALF_LIFE``."""
    age = now - counted_at
    factor: float = 0.5 ** (age / FREQUENCY_HALF_LIFE) if age > 0 else 1.0
    return count * factor


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)
    return sorted_values[rank]


class ModelStats:
    """Counters for one model. Mutated only by the scheduler, on the pool's loop."""

    __slots__ = (
        "_frequency",
        "_frequency_at",
        "current_tasks",
        "errors",
        "hits",
        "last_load_seconds",
        "last_used",
        "load_count",
        "load_failures",
        "load_seconds_total",
        "loaded_at",
        "misses",
        "offload_count",
        "requests",
        "response_times",
        "restore_count",
        "restore_seconds_total",
        "total_tasks",
        "unload_count",
        "version",
    )

    def __init__(self) -> None:
        self.load_count = 0
        self.load_failures = 0
        self.load_seconds_total = 0.0
        self.last_load_seconds: float | None = None
        self.unload_count = 0
        self.offload_count = 0
        self.restore_count = 0
        self.restore_seconds_total = 0.0
        self.requests = 0
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.current_tasks = 0
        self.total_tasks = 0
        self.last_used = 0.0
        self.loaded_at = 0.0
        self.response_times: deque[float] = deque(maxlen=RESPONSE_WINDOW)
        self._frequency = 0.0
        self._frequency_at = 0.0
        self.version = 0
        """Bumped by every ``record_*``: lets the scheduler cache what it derives."""

    def record_request(self, now: float, hit: bool) -> None:
        self.version += 1
        self.requests += 1
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        self._frequency = self.frequency(now) + 1.0
        self._frequency_at = now

    def record_done(self, now: float, seconds: float | None, ok: bool) -> None:
        """A task finished with the model (a lease came back, or a reported sample)."""
        self.version += 1
        self.total_tasks += 1
        self.last_used = now
        if not ok:
            self.errors += 1
        if seconds is not None:
            self.response_times.append(seconds)

    def record_load(self, now: float, seconds: float) -> None:
        self.version += 1
        self.load_count += 1
        self.load_seconds_total += seconds
        self.last_load_seconds = seconds
        self.loaded_at = now
        self.last_used = now

    def record_restore(self, now: float, seconds: float) -> None:
        """Back on its device from the warm tier (not counted as a load)."""
        self.version += 1
        self.restore_count += 1
        self.restore_seconds_total += seconds
        self.loaded_at = now
        self.last_used = now

    def frequency(self, now: float) -> float:
        """Requests, each weighted by 2^(-age / half-life): recent demand counts most."""
        return decayed(self._frequency, self._frequency_at, now)

    @property
    def frequency_counted(self) -> tuple[float, float]:
        """The frequency and the time it was counted at (it decays from there)."""
        return self._frequency, self._frequency_at

    @property
    def mean_load_seconds(self) -> float | None:
        return self.load_seconds_total / self.load_count if self.load_count else None

    @property
    def error_rate(self) -> float:
        return self.errors / self.total_tasks if self.total_tasks else 0.0

    def snapshot(self, now: float) -> dict[str, Any]:
        times = sorted(self.response_times)
        return {
            "load_count": self.load_count,
            "load_failures": self.load_failures,
            "load_seconds_total": round(self.load_seconds_total, 6),
            "last_load_seconds": self.last_load_seconds,
            "unload_count": self.unload_count,
            "offload_count": self.offload_count,
            "restore_count": self.restore_count,
            "restore_seconds_total": round(self.restore_seconds_total, 6),
            "requests": self.requests,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / self.requests if self.requests else 0.0,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "current_tasks": self.current_tasks,
            "total_tasks_processed": self.total_tasks,
            "average_response_time": sum(times) / len(times) if times else 0.0,
            "p50_response_time": percentile(times, 50),
            "p95_response_time": percentile(times, 95),
            "p99_response_time": percentile(times, 99),
            "idle_seconds": max(0.0, now - self.last_used) if self.last_used else None,
            "frequency": round(self.frequency(now), 6),
        }


_ADDED = (
    "load_count", "load_failures", "load_seconds_total", "unload_count", "offload_count",
    "restore_count", "restore_seconds_total", "requests", "hits", "misses", "errors",
    "current_tasks", "total_tasks_processed", "frequency",
)  # fmt: skip
"""The snapshot's counts that add up over the copies of a model."""


def combined_snapshot(copies: Sequence[ModelStats], now: float) -> dict[str, Any]:
    """One model's ``snapshot`` from the stats of its copies (replicas): counts add up,
    rates and response times are over every copy's requests together."""
    views = [stats.snapshot(now) for stats in copies]
    combined: dict[str, Any] = {key: sum(v[key] for v in views) for key in _ADDED}
    requests, done = combined["requests"], combined["total_tasks_processed"]
    combined["hit_rate"] = combined["hits"] / requests if requests else 0.0
    combined["error_rate"] = combined["errors"] / done if done else 0.0
    times = sorted(t for stats in copies for t in stats.response_times)
    combined["average_response_time"] = sum(times) / len(times) if times else 0.0
    for q in (50, 95, 99):
        combined[f"p{q}_response_time"] = percentile(times, q)
    loads = [v["last_load_seconds"] for v in views if v["last_load_seconds"] is not None]
    combined["last_load_seconds"] = loads[-1] if loads else None
    idle = [v["idle_seconds"] for v in views if v["idle_seconds"] is not None]
    combined["idle_seconds"] = min(idle) if idle else None
    return {key: combined[key] for key in views[0]}  # the snapshot's own order
