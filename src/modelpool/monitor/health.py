"""Per model+version health over a sliding window: error rate, latency percentiles, alerts.

Pure and synchronous, like a policy: no I/O, no logging, no event loop; the clock is
injected. Its owner calls ``record()`` after each request and ``check()`` as time
passes; both judge the keys they touch and tell the alert handlers when a level
changes. The rollout reads ``level()`` to decide on an automatic rollback.

Judgement of one key, over the requests of the last ``window`` seconds:

- fewer than ``min_requests`` requests: ``ok``, nothing is judged;
- each metric (error rate, then p95 latency) is ``critical`` at or above its critical
  threshold, else ``warning`` at or above its warning threshold; a threshold of
  ``None`` is not checked;
- the key's level is the worse of the two; the alert names the first metric (in the
  order above) that reached it.

Alerts, one active per key: every change of level sends exactly one alert to every
handler. A change to ``warning`` or ``critical`` (up, or down from critical) sends
``resolved=False`` at the new level; a change back to ``ok`` sends the active alert's
level, metric and threshold again with the metric's current value and
``resolved=True``. While the level stays the same nothing is sent.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from modelpool.types import ModelId

__all__ = [
    "Level",
    "Thresholds",
    "HealthStats",
    "Alert",
    "AlertHandler",
    "HealthMonitor",
]

Metric = Literal["error_rate", "p95"]
Key = tuple[ModelId, str | None]


class Level(StrEnum):
    """How a model version is doing, from good to bad."""

    OK = "ok"  # too few requests to judge, or every metric under its warning threshold
    WARNING = "warning"  # a metric at or above its warning threshold
    CRITICAL = "critical"  # a metric at or above its critical threshold: roll back


_RANK = {Level.OK: 0, Level.WARNING: 1, Level.CRITICAL: 2}


@dataclass(frozen=True)
class Thresholds:
    """When a model version is judged ``warning`` or ``critical``.

    Rates are fractions (``0.05`` is 5 %); latencies are seconds; ``None`` means the
    metric is not checked. Below ``min_requests`` requests in the window, nothing is.
    """

    warning_error_rate: float | None = 0.05
    critical_error_rate: float | None = 0.2
    warning_p95: float | None = None
    critical_p95: float | None = None
    min_requests: int = 20

    def __post_init__(self) -> None:
        for name in ("warning_error_rate", "critical_error_rate"):
            rate = getattr(self, name)
            if rate is not None and not 0.0 <= rate <= 1.0:
                raise ValueError(f"Thresholds.{name} must be within 0..1, got {rate!r}")
        for name in ("warning_p95", "critical_p95"):
            seconds = getattr(self, name)
            if seconds is not None and not seconds >= 0.0:
                raise ValueError(f"Thresholds.{name} must be >= 0 seconds, got {seconds!r}")
        for warning, critical in (
            (self.warning_error_rate, self.critical_error_rate),
            (self.warning_p95, self.critical_p95),
        ):
            if warning is not None and critical is not None and warning > critical:
                raise ValueError(f"Thresholds: warning {warning!r} is above critical {critical!r}")
        if self.min_requests < 0:
            raise ValueError(f"Thresholds.min_requests must be >= 0, got {self.min_requests!r}")


_DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class HealthStats:
    """One key's requests over the last ``window`` seconds.

    Percentiles are nearest-rank over every request's latency, failed ones included:
    the smallest latency with at least p % of the window at or below it. They are
    ``None`` when the window is empty.
    """

    requests: int
    errors: int
    error_rate: float
    p50: float | None
    p95: float | None
    p99: float | None
    window: float


@dataclass(frozen=True)
class Alert:
    """A level change of one model version; ``resolved`` when it went back to ``ok``."""

    model_id: ModelId
    version: str | None
    level: Level
    metric: Metric
    value: float
    threshold: float
    at: float
    resolved: bool = False


AlertHandler = Callable[[Alert], object]
"""Called with every alert; what it returns is ignored and what it raises is counted."""


@dataclass(frozen=True)
class _Verdict:
    level: Level
    metric: Metric = "error_rate"
    value: float = 0.0
    threshold: float = 0.0


_OK = _Verdict(Level.OK)


@dataclass
class _Series:
    samples: deque[tuple[float, float, bool]]  # (recorded at, seconds, ok), oldest first
    ordered: list[float] = field(default_factory=list)
    """The latencies of ``samples``, ascending: percentiles without a sort per request."""
    errors: int = 0  # failures among ``samples``
    alert: Alert | None = field(default=None)  # the active alert, if any


def _nearest_rank(ordered: list[float], percent: int) -> float:
    """The nearest-rank percentile of an ascending, non-empty list (integer maths)."""
    rank = -(-percent * len(ordered) // 100)  # ceil(percent/100 × n), exact
    return ordered[max(rank, 1) - 1]


def _judge(stats: HealthStats, limits: Thresholds) -> _Verdict:
    if stats.requests == 0 or stats.requests < limits.min_requests:
        return _OK
    worst = _OK
    checks: tuple[tuple[Metric, float | None, float | None, float | None], ...] = (
        ("error_rate", stats.error_rate, limits.warning_error_rate, limits.critical_error_rate),
        ("p95", stats.p95, limits.warning_p95, limits.critical_p95),
    )
    for metric, value, warning, critical in checks:
        if value is None:
            continue
        for level, threshold in ((Level.CRITICAL, critical), (Level.WARNING, warning)):
            if threshold is not None and value >= threshold:
                if _RANK[level] > _RANK[worst.level]:
                    worst = _Verdict(level, metric, value, threshold)
                break
    return worst


class HealthMonitor:
    """Keeps each ``(model_id, version)``'s recent requests and judges them.

    Memory is bounded: at most ``max_samples`` requests per key are kept, so under a
    heavier load the statistics cover the most recent ``max_samples`` requests of the
    window. A handler that raises is counted in ``handler_errors`` and the others still
    run.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        window: float = 60.0,
        thresholds: Thresholds = _DEFAULT_THRESHOLDS,
        *,
        max_samples: int = 10_000,
    ) -> None:
        if not window > 0:
            raise ValueError(f"HealthMonitor window must be > 0 seconds, got {window!r}")
        if max_samples < 1:
            raise ValueError(f"HealthMonitor max_samples must be >= 1, got {max_samples!r}")
        self._clock = clock
        self.window = float(window)
        self.thresholds = thresholds
        self.max_samples = max_samples
        self.handler_errors = 0
        self._overrides: dict[ModelId, Thresholds] = {}
        self._series: dict[Key, _Series] = {}
        self._handlers: list[AlertHandler] = []

    # -- configuration ---------------------------------------------------------------

    def set_thresholds(self, model_id: ModelId, thresholds: Thresholds | None) -> None:
        """Judge every version of ``model_id`` by ``thresholds`` (``None``: the defaults).

        Takes effect at the next ``record()`` or ``check()``.
        """
        if thresholds is None:
            self._overrides.pop(model_id, None)
        else:
            self._overrides[model_id] = thresholds

    def thresholds_for(self, model_id: ModelId) -> Thresholds:
        return self._overrides.get(model_id, self.thresholds)

    def add_handler(self, handler: AlertHandler) -> None:
        self._handlers.append(handler)

    # -- input -----------------------------------------------------------------------

    def record(self, model_id: ModelId, version: str | None, seconds: float, ok: bool) -> None:
        """Count one finished request of ``seconds`` and judge its key."""
        if not seconds >= 0.0 or math.isinf(seconds):
            raise ValueError(f"request latency must be a finite number >= 0, got {seconds!r}")
        key = (model_id, version)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(deque())
        samples = series.samples
        if len(samples) >= self.max_samples:
            self._drop_oldest(series)
        now = self._clock()
        samples.append((now, float(seconds), ok))
        bisect.insort(series.ordered, float(seconds))
        series.errors += not ok
        self._evaluate(key, series, now)

    def check(self) -> list[Alert]:
        """Judge every key as time has passed; returns the alerts sent by this call."""
        now = self._clock()
        sent: list[Alert] = []
        for key, series in list(self._series.items()):
            alert = self._evaluate(key, series, now)
            if alert is not None:
                sent.append(alert)
        return sent

    # -- queries ---------------------------------------------------------------------

    def stats(self, model_id: ModelId, version: str | None) -> HealthStats:
        """The key's statistics over the window ending now (empty if never recorded)."""
        series = self._series.get((model_id, version))
        return self._stats(series, self._clock())

    def level(self, model_id: ModelId, version: str | None) -> Level:
        """The key's level judged now (alerts change only on ``record``/``check``)."""
        return _judge(self.stats(model_id, version), self.thresholds_for(model_id)).level

    def active_alerts(self) -> list[Alert]:
        """The unresolved alert of each key that has one, in order of key creation."""
        return [s.alert for s in self._series.values() if s.alert is not None]

    def snapshot(self) -> dict[str, Any]:
        """Every key's statistics, level and active alert, as JSON-ready plain data."""
        now = self._clock()
        series: list[dict[str, Any]] = []
        for (model_id, version), entry in sorted(
            self._series.items(), key=lambda item: (item[0][0], item[0][1] or "")
        ):
            stats = self._stats(entry, now)
            series.append(
                {
                    "model_id": model_id,
                    "version": version,
                    "level": str(_judge(stats, self.thresholds_for(model_id)).level),
                    **asdict(stats),
                }
            )
        alerts = [{**asdict(a), "level": str(a.level)} for a in self.active_alerts()]
        return {"window": self.window, "at": now, "series": series, "alerts": alerts}

    # -- internals -------------------------------------------------------------------

    def _stats(self, series: _Series | None, now: float) -> HealthStats:
        if series is None:
            return HealthStats(0, 0, 0.0, None, None, None, self.window)
        self._expire(series, now)
        samples = series.samples
        if not samples:
            return HealthStats(0, 0, 0.0, None, None, None, self.window)
        ordered = series.ordered
        return HealthStats(
            requests=len(samples),
            errors=series.errors,
            error_rate=series.errors / len(samples),
            p50=_nearest_rank(ordered, 50),
            p95=_nearest_rank(ordered, 95),
            p99=_nearest_rank(ordered, 99),
            window=self.window,
        )

    def _expire(self, series: _Series, now: float) -> None:
        """Drop requests recorded before ``now - window`` (one at the edge stays)."""
        oldest_kept = now - self.window
        samples = series.samples
        while samples and samples[0][0] < oldest_kept:
            self._drop_oldest(series)

    @staticmethod
    def _drop_oldest(series: _Series) -> None:
        _, seconds, ok = series.samples.popleft()
        series.errors -= not ok
        del series.ordered[bisect.bisect_left(series.ordered, seconds)]

    def _evaluate(self, key: Key, series: _Series, now: float) -> Alert | None:
        model_id, version = key
        stats = self._stats(series, now)
        verdict = _judge(stats, self.thresholds_for(model_id))
        active = series.alert
        if verdict.level is (Level.OK if active is None else active.level):
            return None
        if active is not None and verdict.level is Level.OK:
            value = stats.error_rate if active.metric == "error_rate" else stats.p95
            alert = replace(active, value=0.0 if value is None else value, at=now, resolved=True)
            series.alert = None
        else:
            alert = Alert(
                model_id,
                version,
                verdict.level,
                verdict.metric,
                verdict.value,
                verdict.threshold,
                now,
            )
            series.alert = alert
        self._send(alert)
        return alert

    def _send(self, alert: Alert) -> None:
        for handler in list(self._handlers):
            try:
                handler(alert)
            except Exception:  # a broken handler must not stop the monitor or the others
                self.handler_errors += 1
