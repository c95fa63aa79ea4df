"""HealthMonitor: sliding-window statistics, judgement against thresholds, and alerts.

Time is a ``ManualClock``; alerts are collected by a plain list handler. No sleeps.
"""

from __future__ import annotations

import json

import pytest

from modelpool.core.testing import ManualClock
from modelpool.monitor.health import Alert, HealthMonitor, Level, Thresholds

T0 = 1000.0  # ManualClock's start


def monitor(
    thresholds: Thresholds | None = None, **kwargs: int
) -> tuple[HealthMonitor, ManualClock, list[Alert]]:
    clock = ManualClock(T0)
    mon = HealthMonitor(clock, window=60.0, thresholds=thresholds or Thresholds(), **kwargs)
    alerts: list[Alert] = []
    mon.add_handler(alerts.append)
    return mon, clock, alerts


def record_many(
    mon: HealthMonitor,
    n: int,
    *,
    ok: bool,
    seconds: float = 0.1,
    model: str = "m",
    version: str | None = "v1",
) -> None:
    for _ in range(n):
        mon.record(model, version, seconds, ok)


def test_window_expiry_moves_the_statistics() -> None:
    mon, clock, _ = monitor()
    mon.record("m", "v1", 0.5, ok=False)
    mon.record("m", "v1", 0.5, ok=True)
    clock.advance(30.0)
    mon.record("m", "v1", 0.1, ok=True)

    at_30 = mon.stats("m", "v1")
    assert (at_30.requests, at_30.errors, at_30.window) == (3, 1, 60.0)
    assert at_30.error_rate == pytest.approx(1 / 3)

    clock.advance(30.0)  # the first two sit exactly on the edge: still inside
    assert mon.stats("m", "v1").requests == 3

    clock.advance(0.001)
    moved = mon.stats("m", "v1")
    assert (moved.requests, moved.errors, moved.error_rate) == (1, 0, 0.0)
    assert moved.p50 == moved.p99 == 0.1

    clock.advance(30.0)
    empty = mon.stats("m", "v1")
    assert (empty.requests, empty.errors, empty.error_rate) == (0, 0, 0.0)
    assert empty.p50 is empty.p95 is empty.p99 is None


def test_percentiles_are_nearest_rank() -> None:
    mon, _, _ = monitor()
    for ms in reversed(range(1, 101)):  # arrival order must not matter
        mon.record("hundred", None, ms / 1000, ok=True)
    for seconds in (0.5, 0.1, 0.4, 0.2, 0.3):
        mon.record("five", None, seconds, ok=True)

    hundred = mon.stats("hundred", None)
    assert (hundred.p50, hundred.p95, hundred.p99) == (0.050, 0.095, 0.099)
    five = mon.stats("five", None)  # ranks ceil(2.5)=3, ceil(4.75)=5, ceil(4.95)=5
    assert (five.p50, five.p95, five.p99) == (0.3, 0.5, 0.5)


def test_min_requests_gates_judgement() -> None:
    mon, _, alerts = monitor(Thresholds(min_requests=20))
    record_many(mon, 19, ok=False)
    assert mon.stats("m", "v1").error_rate == 1.0
    assert mon.level("m", "v1") is Level.OK
    assert alerts == []

    mon.record("m", "v1", 0.1, ok=False)
    assert mon.level("m", "v1") is Level.CRITICAL
    assert [a.level for a in alerts] == [Level.CRITICAL]


def test_warning_then_critical_then_resolved() -> None:
    mon, clock, alerts = monitor(Thresholds(min_requests=20))
    record_many(mon, 18, ok=True)
    record_many(mon, 2, ok=False)  # 2/20 = 0.10: warning
    clock.advance(1.0)
    record_many(mon, 4, ok=False)  # 3/21, 4/22 warning; 5/23 critical; 6/24 critical again

    warning = Alert("m", "v1", Level.WARNING, "error_rate", 0.1, 0.05, T0)
    critical = Alert("m", "v1", Level.CRITICAL, "error_rate", 5 / 23, 0.2, T0 + 1.0)
    assert alerts == [warning, critical]
    assert mon.active_alerts() == [critical]

    clock.advance(61.0)  # everything has left the window
    assert mon.level("m", "v1") is Level.OK  # judged now...
    assert mon.active_alerts() == [critical]  # ...but alerts move only on record/check

    resolved = Alert("m", "v1", Level.CRITICAL, "error_rate", 0.0, 0.2, T0 + 62.0, resolved=True)
    assert mon.check() == [resolved]
    assert alerts == [warning, critical, resolved]
    assert mon.active_alerts() == []


def test_falling_from_critical_to_warning_then_ok() -> None:
    mon, _, alerts = monitor(Thresholds(min_requests=10))
    record_many(mon, 8, ok=True)
    record_many(mon, 2, ok=False)  # 2/10 = 0.2: critical
    record_many(mon, 30, ok=True)  # 2/11 warning ... 2/40 = 0.05 still warning
    assert [a.level for a in alerts] == [Level.CRITICAL, Level.WARNING]
    assert alerts[1] == Alert("m", "v1", Level.WARNING, "error_rate", 2 / 11, 0.05, T0)

    mon.record("m", "v1", 0.1, ok=True)  # 2/41 < 0.05
    assert alerts[2] == Alert("m", "v1", Level.WARNING, "error_rate", 2 / 41, 0.05, T0, True)
    assert len(alerts) == 3


def test_no_duplicate_alerts_while_the_level_stays() -> None:
    mon, clock, alerts = monitor(Thresholds(min_requests=5))
    record_many(mon, 100, ok=False)
    clock.advance(10.0)
    assert mon.check() == []
    record_many(mon, 50, ok=False)
    assert mon.check() == []
    assert len(alerts) == 1
    assert len(mon.active_alerts()) == 1


def test_per_model_threshold_override() -> None:
    mon, _, alerts = monitor()
    mon.set_thresholds("strict", Thresholds(0.01, 0.02, min_requests=5))
    for model in ("strict", "lax"):
        record_many(mon, 39, ok=True, model=model)
        mon.record(model, "v1", 0.1, ok=False)  # 1/40 = 0.025

    assert mon.level("strict", "v1") is Level.CRITICAL
    assert mon.level("lax", "v1") is Level.OK
    assert [(a.model_id, a.level, a.threshold) for a in alerts] == [
        ("strict", Level.CRITICAL, 0.02)
    ]
    assert mon.thresholds_for("lax") == Thresholds()

    mon.set_thresholds("strict", None)  # back to the defaults
    assert mon.level("strict", "v1") is Level.OK
    assert [a.resolved for a in mon.check()] == [True]


def test_p95_threshold() -> None:
    limits = Thresholds(warning_p95=1.0, critical_p95=2.0, min_requests=20)
    mon, _, alerts = monitor(limits)
    record_many(mon, 18, ok=True, seconds=0.1)
    mon.record("m", "v1", 5.0, ok=True)  # one slow request of 19: p95 is the 19th (5.0)...
    mon.record("m", "v1", 0.1, ok=True)  # ...but of 20 it is the 19th of 20: 0.1
    assert mon.stats("m", "v1").p95 == 0.1
    assert alerts == []

    mon.record("m", "v1", 1.5, ok=True)  # sorted: 19×0.1, 1.5, 5.0 → 20th of 21 = 1.5
    assert alerts == [Alert("m", "v1", Level.WARNING, "p95", 1.5, 1.0, T0)]
    record_many(mon, 2, ok=True, seconds=3.0)  # 23: rank 22 = 3.0
    assert alerts[-1] == Alert("m", "v1", Level.CRITICAL, "p95", 3.0, 2.0, T0)


def test_error_rate_is_named_when_both_metrics_reach_the_level() -> None:
    mon, _, alerts = monitor(Thresholds(critical_p95=1.0, min_requests=1))
    mon.record("m", "v1", 9.0, ok=False)
    assert [(a.level, a.metric) for a in alerts] == [(Level.CRITICAL, "error_rate")]


def test_versions_are_tracked_separately() -> None:
    mon, _, alerts = monitor()
    record_many(mon, 30, ok=True, version="v1", seconds=0.2)
    record_many(mon, 30, ok=False, version="v2", seconds=0.4)
    record_many(mon, 5, ok=True, version=None)

    assert mon.stats("m", "v1").errors == 0
    assert mon.stats("m", "v2").errors == 30
    assert mon.stats("m", None).requests == 5
    assert mon.stats("m", "v3").requests == 0
    assert (mon.level("m", "v1"), mon.level("m", "v2")) == (Level.OK, Level.CRITICAL)
    assert [(a.model_id, a.version) for a in alerts] == [("m", "v2")]


def test_a_raising_handler_does_not_stop_the_others() -> None:
    clock = ManualClock(T0)
    mon = HealthMonitor(clock, thresholds=Thresholds(warning_error_rate=None, min_requests=1))
    seen: list[Alert] = []

    def boom(alert: Alert) -> None:
        raise RuntimeError("handler broke")

    mon.add_handler(boom)
    mon.add_handler(seen.append)
    mon.record("m", "v1", 0.1, ok=False)
    assert mon.handler_errors == 1
    assert [a.resolved for a in seen] == [False]

    record_many(mon, 5, ok=True)  # the monitor keeps working: 1/6 < 0.2 resolves
    assert mon.handler_errors == 2
    assert [a.resolved for a in seen] == [False, True]


def test_memory_is_bounded_per_key() -> None:
    mon, _, _ = monitor(max_samples=100)
    record_many(mon, 150, ok=False)
    record_many(mon, 100, ok=True)  # pushes every failure out
    stats = mon.stats("m", "v1")
    assert (stats.requests, stats.errors, stats.error_rate) == (100, 0, 0.0)
    record_many(mon, 30, ok=False)
    assert mon.stats("m", "v1").errors == 30
    assert mon.stats("m", "v1").requests == 100


def test_snapshot_is_json_ready() -> None:
    mon, _, _ = monitor(Thresholds(min_requests=1))
    mon.record("b", None, 0.2, ok=True)
    mon.record("a", "v2", 0.3, ok=False)
    snap = json.loads(json.dumps(mon.snapshot()))

    assert snap["window"] == 60.0
    assert snap["at"] == T0
    assert [(s["model_id"], s["version"], s["level"]) for s in snap["series"]] == [
        ("a", "v2", "critical"),
        ("b", None, "ok"),
    ]
    assert snap["series"][0] == {
        "model_id": "a",
        "version": "v2",
        "level": "critical",
        "requests": 1,
        "errors": 1,
        "error_rate": 1.0,
        "p50": 0.3,
        "p95": 0.3,
        "p99": 0.3,
        "window": 60.0,
    }
    assert [(a["model_id"], a["level"], a["resolved"]) for a in snap["alerts"]] == [
        ("a", "critical", False)
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"warning_error_rate": 0.5, "critical_error_rate": 0.2},
        {"warning_p95": 3.0, "critical_p95": 2.0},
        {"critical_error_rate": 1.5},
        {"min_requests": -1},
    ],
)
def test_inconsistent_thresholds_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Thresholds"):
        Thresholds(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [-0.1, float("nan"), float("inf")])
def test_bad_latency_is_refused(seconds: float) -> None:
    mon, _, _ = monitor()
    with pytest.raises(ValueError, match="latency"):
        mon.record("m", "v1", seconds, ok=True)
    assert mon.stats("m", "v1").requests == 0
