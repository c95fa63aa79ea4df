"""HealthMonitor at the edges: each threshold exactly reached, each refusal's message.

Time is a ``ManualClock``; alerts are collected in a list. Companion of
``test_health_monitor.py``, which covers the behaviour as a whole.
"""

from __future__ import annotations

import re

import pytest

from modelpool.core.testing import ManualClock
from modelpool.monitor.health import Alert, HealthMonitor, HealthStats, Level, Thresholds


def monitor(thresholds: Thresholds, window: float = 60.0) -> tuple[HealthMonitor, list[Alert]]:
    mon = HealthMonitor(ManualClock(0.0), window=window, thresholds=thresholds)
    alerts: list[Alert] = []
    mon.add_handler(alerts.append)
    return mon, alerts


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def record(mon: HealthMonitor, ok: int, failed: int, seconds: float = 0.1) -> None:
    for _ in range(ok):
        mon.record("m", "v1", seconds, ok=True)
    for _ in range(failed):
        mon.record("m", "v1", seconds, ok=False)


@pytest.mark.parametrize(
    ("failed", "level"),
    [(0, Level.OK), (4, Level.OK), (5, Level.WARNING), (19, Level.WARNING), (20, Level.CRITICAL)],
)
def test_error_rate_levels_start_at_their_thresholds(failed: int, level: Level) -> None:
    mon, _ = monitor(Thresholds(0.05, 0.2, min_requests=1))
    record(mon, 100 - failed, failed)
    assert mon.level("m", "v1") is level


@pytest.mark.parametrize(
    ("seconds", "level"),
    [(0.99, Level.OK), (1.0, Level.WARNING), (1.99, Level.WARNING), (2.0, Level.CRITICAL)],
)
def test_p95_levels_start_at_their_thresholds(seconds: float, level: Level) -> None:
    mon, alerts = monitor(Thresholds(None, None, 1.0, 2.0, min_requests=1))
    record(mon, 20, 0, seconds)
    assert mon.level("m", "v1") is level
    if level is not Level.OK:
        assert (alerts[-1].metric, alerts[-1].value) == ("p95", seconds)


def test_judgement_starts_at_exactly_min_requests() -> None:
    mon, alerts = monitor(Thresholds(min_requests=3))
    record(mon, 0, 2)
    assert mon.level("m", "v1") is Level.OK
    record(mon, 0, 1)
    assert mon.level("m", "v1") is Level.CRITICAL
    assert len(alerts) == 1


def test_min_requests_zero_judges_from_the_first_request_but_not_an_empty_window() -> None:
    mon, alerts = monitor(Thresholds(min_requests=0))
    assert mon.level("m", "v1") is Level.OK
    assert mon.check() == []
    record(mon, 0, 1)
    assert mon.level("m", "v1") is Level.CRITICAL
    assert alerts[0] == Alert("m", "v1", Level.CRITICAL, "error_rate", 1.0, 0.2, 0.0)


def test_the_worse_metric_decides_and_is_named() -> None:
    # errors only warn, latency is critical: the alert is the latency's
    limits = Thresholds(0.05, 0.5, 1.0, 2.0, min_requests=1)
    mon, alerts = monitor(limits)
    record(mon, 9, 1, seconds=3.0)  # 10 % errors, p95 3 s
    assert alerts == [Alert("m", "v1", Level.CRITICAL, "p95", 3.0, 2.0, 0.0)]


def test_an_unchecked_metric_never_alerts() -> None:
    mon, alerts = monitor(Thresholds(None, None, None, None, min_requests=1))
    record(mon, 0, 50, seconds=100.0)
    assert mon.level("m", "v1") is Level.OK
    assert alerts == []


def test_only_a_warning_threshold_gives_warnings_at_most() -> None:
    mon, _ = monitor(Thresholds(0.1, None, min_requests=1))
    record(mon, 0, 10)
    assert mon.level("m", "v1") is Level.WARNING


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"warning_error_rate": -0.01},
            "Thresholds.warning_error_rate must be within 0..1, got -0.01",
        ),
        (
            {"critical_error_rate": 1.01},
            "Thresholds.critical_error_rate must be within 0..1, got 1.01",
        ),
        ({"warning_p95": -1.0}, "Thresholds.warning_p95 must be >= 0 seconds, got -1.0"),
        ({"critical_p95": float("nan")}, "Thresholds.critical_p95 must be >= 0 seconds, got nan"),
        (
            {"warning_p95": 2.0, "critical_p95": 1.0},
            "Thresholds: warning 2.0 is above critical 1.0",
        ),
        ({"warning_error_rate": 0.3}, "Thresholds: warning 0.3 is above critical 0.2"),
        ({"min_requests": -1}, "Thresholds.min_requests must be >= 0, got -1"),
    ],
)
def test_each_bad_threshold_is_named(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        Thresholds(**kwargs)  # type: ignore[arg-type]


def test_thresholds_at_their_limits_are_accepted() -> None:
    Thresholds(0.0, 0.0, 0.0, 0.0, min_requests=0)
    Thresholds(1.0, 1.0)
    Thresholds(0.2, 0.2, 3.0, 3.0)  # warning equal to critical
    Thresholds(0.5, None, None, 1.0)  # one side unchecked: nothing to compare


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0.0}, "HealthMonitor window must be > 0 seconds, got 0.0"),
        ({"window": float("nan")}, "HealthMonitor window must be > 0 seconds, got nan"),
        ({"max_samples": 0}, "HealthMonitor max_samples must be >= 1, got 0"),
    ],
)
def test_a_bad_monitor_setting_is_named(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        HealthMonitor(ManualClock(0.0), **kwargs)  # type: ignore[arg-type]


def test_one_sample_is_enough_room() -> None:
    mon = HealthMonitor(ManualClock(0.0), max_samples=1, thresholds=Thresholds(min_requests=1))
    mon.record("m", None, 0.5, ok=False)
    mon.record("m", None, 0.2, ok=True)
    stats = mon.stats("m", None)
    assert (stats.requests, stats.errors, stats.p50) == (1, 0, 0.2)
    assert mon.window == 60.0
    assert isinstance(mon.window, float)


def test_a_latency_of_zero_is_fine_and_every_bad_one_is_named() -> None:
    mon, _ = monitor(Thresholds())
    mon.record("m", "v1", 0.0, ok=True)
    assert mon.stats("m", "v1").p99 == 0.0
    bad = "request latency must be a finite number >= 0, got -1.0"
    with pytest.raises(ValueError, match=exactly(bad)):
        mon.record("m", "v1", -1.0, ok=True)


def test_alerts_carry_the_clock_time_of_the_change() -> None:
    clock = ManualClock(500.0)
    mon = HealthMonitor(clock, window=10.0, thresholds=Thresholds(min_requests=1))
    sent: list[Alert] = []
    mon.add_handler(sent.append)
    mon.record("m", "v1", 0.1, ok=False)
    clock.advance(10.5)
    assert mon.check() == [
        Alert("m", "v1", Level.CRITICAL, "error_rate", 0.0, 0.2, 510.5, resolved=True)
    ]
    assert [a.at for a in sent] == [500.0, 510.5]
    assert mon.check() == []  # nothing changed since


def test_a_resolved_p95_alert_reports_the_latency_now() -> None:
    clock = ManualClock(0.0)
    mon = HealthMonitor(clock, window=10.0, thresholds=Thresholds(None, None, 1.0, None, 2))
    sent: list[Alert] = []
    mon.add_handler(sent.append)
    mon.record("m", "v1", 5.0, ok=True)
    mon.record("m", "v1", 5.0, ok=True)  # p95 5 s: warning
    clock.advance(6.0)
    for _ in range(38):
        mon.record("m", "v1", 0.1, ok=True)  # the 38th: 40 in all, p95 is rank 38 → 0.1
    warning = Alert("m", "v1", Level.WARNING, "p95", 5.0, 1.0, 0.0)
    assert sent == [warning, Alert("m", "v1", Level.WARNING, "p95", 0.1, 1.0, 6.0, True)]
    assert mon.active_alerts() == []


def test_snapshot_lists_an_unversioned_key_before_named_versions() -> None:
    mon, _ = monitor(Thresholds(min_requests=1))
    mon.record("m", "v2", 0.1, ok=True)
    mon.record("m", None, 0.1, ok=True)
    mon.record("a", "z", 0.1, ok=True)
    series = mon.snapshot()["series"]
    assert [(s["model_id"], s["version"]) for s in series] == [("a", "z"), ("m", None), ("m", "v2")]


def test_thresholds_for_a_model_fall_back_to_the_monitors() -> None:
    default = Thresholds(0.1, 0.3)
    mon = HealthMonitor(ManualClock(0.0), thresholds=default)
    assert mon.thresholds_for("any") is default
    special = Thresholds(0.01, 0.02)
    mon.set_thresholds("m", special)
    assert mon.thresholds_for("m") is special
    mon.set_thresholds("m", None)
    mon.set_thresholds("never-set", None)  # forgetting what was never set is fine
    assert mon.thresholds_for("m") is default


def test_percentiles_of_two_hundred_requests_take_the_exact_rank() -> None:
    mon, _ = monitor(Thresholds(min_requests=1))
    for ms in range(1, 201):
        mon.record("m", "v1", ms / 1000, ok=True)
    stats = mon.stats("m", "v1")
    assert (stats.p50, stats.p95, stats.p99) == (0.1, 0.19, 0.198)


def test_the_monitors_defaults_and_a_short_window() -> None:
    mon = HealthMonitor(ManualClock(0.0), window=0.5)
    assert (mon.window, mon.max_samples, mon.thresholds) == (0.5, 10_000, Thresholds())


def test_empty_statistics_for_a_key_never_seen_and_one_whose_window_passed() -> None:
    clock = ManualClock(0.0)
    mon = HealthMonitor(clock, window=10.0)
    empty = HealthStats(0, 0, 0.0, None, None, None, 10.0)
    assert mon.stats("never", None) == empty
    mon.record("m", None, 0.1, ok=False)
    clock.advance(11.0)
    assert mon.stats("m", None) == empty


def test_a_p95_alert_resolved_by_an_empty_window_reports_zero() -> None:
    clock = ManualClock(0.0)
    mon = HealthMonitor(clock, window=10.0, thresholds=Thresholds(None, None, 1.0, None, 1))
    mon.record("m", "v1", 5.0, ok=True)
    clock.advance(11.0)
    [resolved] = mon.check()
    assert (resolved.metric, resolved.value, resolved.resolved) == ("p95", 0.0, True)


def test_the_snapshot_judges_each_model_by_its_own_thresholds() -> None:
    mon, _ = monitor(Thresholds(min_requests=1000))
    mon.set_thresholds("strict", Thresholds(min_requests=1))
    mon.record("strict", "1", 0.1, ok=False)
    mon.record("strict", None, 0.1, ok=False)
    mon.record("lax", "1", 0.1, ok=False)
    snap = mon.snapshot()
    levels = [(s["model_id"], s["version"], s["level"]) for s in snap["series"]]
    assert levels == [("lax", "1", "ok"), ("strict", None, "critical"), ("strict", "1", "critical")]
    alert = snap["alerts"][0]
    assert set(alert) == {
        "model_id", "version", "level", "metric", "value", "threshold", "at", "resolved"
    }  # fmt: skip
    assert type(alert["level"]) is str
    assert alert["level"] == "critical"
