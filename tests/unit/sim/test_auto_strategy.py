"""The shell of ``strategy: auto``: when it switches, and what it does when a replay fails.

The replays here are fakes (named so) returning scripted tables: what is under test is
the evaluation around them, on a manual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

import psutil
import pytest

from modelpool import ModelPool, ModelSpec
from modelpool.config import AutoOptions
from modelpool.core.events import EventKind
from modelpool.core.testing import ManualClock
from modelpool.core.traffic_window import Arrival
from modelpool.errors import ConfigError
from modelpool.sim.auto import AutoStrategy, Evaluation
from modelpool.sim.auto_choice import CandidateRow
from modelpool.sim.replay import PoolPicture

GB = 10**9


def auto_pool(clock: ManualClock) -> ModelPool:
    models = [ModelSpec(id=i, backend="fake", memory=GB, device="cpu") for i in ("a", "b")]
    return ModelPool(
        models, budgets={"cpu": "1GB"}, strategy="auto", clock=clock,
        auto_options={"replay_in": "thread"},  # the fakes below live in this process
    )  # fmt: skip


class FakeReplay:
    """Returns the next scripted table; remembers what it was asked."""

    def __init__(self, *tables: dict[str, float]) -> None:
        self.tables = list(tables)
        self.calls: list[tuple[int, str]] = []

    def __call__(
        self, arrivals: Sequence[Arrival], picture: PoolPicture, names: Sequence[str], current: str
    ) -> list[CandidateRow]:
        self.calls.append((len(arrivals), current))
        waits = self.tables.pop(0)
        return [CandidateRow(name, wait, wait, 1) for name, wait in waits.items()]


def test_it_switches_past_the_hysteresis_only_and_each_evaluation_is_an_event() -> None:
    clock = ManualClock(0.0)
    pool = auto_pool(clock)
    replay = FakeReplay(
        {"hybrid": 100.0, "lru": 95.0},  # 5% better: within the 10% hysteresis
        {"hybrid": 100.0, "lru": 80.0},  # 20% better: switch
        {"lru": 80.0, "hybrid": 78.0},  # back by 2.5%: stays on lru
    )
    auto = AutoStrategy(pool, replay=replay)
    assert pool.traffic_window is not None
    pool.traffic_window.record("a", 0.0, 1.0)

    async def scenario() -> list[str]:
        chosen = []
        for _ in range(3):
            clock.advance(300.0)
            chosen.append((await auto.evaluate()).chosen)
        return chosen

    assert asyncio.run(scenario()) == ["hybrid", "lru", "lru"]
    assert pool.strategy == "lru"
    assert replay.calls == [(1, "hybrid"), (1, "hybrid"), (1, "lru")]  # the window, the current
    kinds = [e.kind for e in pool.recent_events()]
    assert kinds.count(EventKind.STRATEGY_EVALUATED) == 3
    changed = [e for e in pool.recent_events() if e.kind is EventKind.STRATEGY_CHANGED]
    assert len(changed) == 1
    assert changed[0].detail["old"] == "hybrid"
    assert changed[0].detail["new"] == "lru"
    assert changed[0].detail["table"][1] == {
        "strategy": "lru", "total_wait": 80.0, "p95_wait": 80.0, "cold_loads": 1,
        "warm_restores": 0,
    }  # fmt: skip
    status = auto.status()
    assert (status["strategy"], status["evaluations"], status["switches"]) == ("lru", 3, 1)
    assert status["last"]["table"][0]["strategy"] == "lru"


def test_a_failing_replay_is_logged_and_skipped_and_the_strategy_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(0.0)
    pool = auto_pool(clock)

    def broken(*_: object) -> list[CandidateRow]:
        raise RuntimeError("replay broke")

    auto = AutoStrategy(pool, replay=broken)
    evaluation = asyncio.run(auto.evaluate())
    assert pool.strategy == "hybrid"
    assert evaluation.error is not None
    assert "replay broke" in evaluation.error
    assert auto.skipped == 1
    assert auto.status()["last"] is None  # no table yet: nothing was compared
    assert "replay broke" in auto.status()["last_skipped"]
    assert "replay skipped" in caplog.text
    event = pool.recent_events()[-1]
    assert event.kind is EventKind.STRATEGY_EVALUATED
    assert "replay broke" in event.detail["error"]


def test_a_replay_past_the_timeout_is_skipped_and_the_next_waits_for_it_to_end() -> None:
    clock = ManualClock(0.0)
    pool = auto_pool(clock)
    release = threading.Event()
    started = threading.Event()

    def stuck(*_: object) -> list[CandidateRow]:
        started.set()
        release.wait(timeout=30)
        return [CandidateRow("hybrid", 10.0, 1.0, 1), CandidateRow("lru", 0.0, 0.0, 0)]

    options = AutoOptions(timeout=0.05, replay_in="thread")
    auto = AutoStrategy(pool, options, replay=stuck)

    async def scenario() -> tuple[str | None, str | None]:
        first = await auto.evaluate()
        assert started.is_set()
        second = await auto.evaluate()  # the stuck one still runs: not started again
        release.set()
        return first.error, second.error

    first, second = asyncio.run(scenario())
    assert first == "ran past 0.05 s"
    assert second == "the previous replay is still running"
    assert pool.strategy == "hybrid"


def test_a_fixed_strategy_pool_cannot_run_auto() -> None:
    pool = ModelPool([], budgets={"cpu": "1GB"}, strategy="lru")
    with pytest.raises(ConfigError, match="auto needs strategy: auto"):
        AutoStrategy(pool)


def test_an_evaluation_of_a_pool_with_one_model_is_a_no_op() -> None:
    clock = ManualClock(0.0)
    models = [ModelSpec(id="only", backend="fake", memory=GB, device="cpu")]
    pool = ModelPool(models, budgets={"cpu": "1GB"}, strategy="auto", clock=clock)
    assert pool.traffic_window is not None
    for second in range(20):
        pool.traffic_window.record("only", float(second), 0.5)
    auto = AutoStrategy(pool)  # the real replay, in its worker process

    async def once() -> Evaluation:
        try:
            return await auto.evaluate()
        finally:
            await auto.stop()  # the worker process ends with it

    evaluation = asyncio.run(once())
    assert (evaluation.chosen, evaluation.table, evaluation.error) == ("hybrid", [], None)
    assert evaluation.why.startswith("nothing to compare")
    assert pool.strategy == "hybrid"
    assert not [e for e in pool.recent_events() if e.kind is EventKind.STRATEGY_CHANGED]


def test_a_replay_process_past_the_timeout_is_killed_and_skipped() -> None:
    clock = ManualClock(0.0)
    models = [ModelSpec(id=i, backend="fake", memory=GB, device="cpu") for i in ("a", "b")]
    pool = ModelPool(models, budgets={"cpu": "1GB"}, strategy="auto", clock=clock)
    assert pool.traffic_window is not None
    for second in range(20):
        pool.traffic_window.record("ab"[second % 2], float(second), 0.5)
    # A worker process cannot even start its interpreter in 10 ms.
    auto = AutoStrategy(pool, AutoOptions(timeout=0.01, replay_in="process"))

    def replay_workers() -> list[int]:
        """This process's replay workers (other tests may have children of their own)."""
        found = []
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "modelpool.sim.replay_worker" in " ".join(child.cmdline()):
                    found.append(child.pid)
        return found

    async def once() -> tuple[Evaluation, list[int]]:
        evaluation = await auto.evaluate()
        return evaluation, replay_workers()

    evaluation, left = asyncio.run(once())
    assert evaluation.error == "ran past 0.01 s"
    assert pool.strategy == "hybrid"
    assert left == []  # killed and reaped, not left running
