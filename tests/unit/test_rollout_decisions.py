"""The rollout's decisions, called directly: an operation, a health level, a manual clock.

No pool, no loop, no manager: each test builds an ``Operation`` and asks what it does
next; the manager's part (carrying the move out) is covered in
tests/integration/test_rollouts_fake.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from modelpool.core.states import ModelState
from modelpool.core.testing import ManualClock
from modelpool.monitor.health import Alert, Level
from modelpool.rollout import Operation, Status, Strategy, make_plan
from modelpool.rollout.decisions import (
    Hold,
    Promote,
    Revert,
    RollBack,
    Stay,
    StepUp,
    interrupted,
    next_move,
    rolls_back_on,
    step_to,
    switch_problems,
    to_forget,
    to_roll_back,
    unregister_problems,
    why_critical,
)


def operation(
    strategy: Strategy = Strategy.CANARY,
    settings: dict[str, Any] | None = None,
    *,
    status: Status = Status.RUNNING,
    op_id: str = "op-1",
    source: str = "v1",
    target: str = "v2",
) -> Operation:
    return Operation(
        id=op_id,
        model="chat",
        source=source,
        target=target,
        strategy=strategy,
        settings=dict(settings or {}),
        plan=make_plan(strategy, settings),
        created=0.0,
        status=status,
    )


def take(op: Operation, move: StepUp) -> None:
    """What the manager does with a step: the operation's side of it."""
    op.step, op.share, op.next_step_at = move.step, move.share, move.next_at


def alert(level: Level = Level.CRITICAL, *, version: str = "v2", resolved: bool = False) -> Alert:
    return Alert("chat", version, level, "error_rate", 0.3, 0.2, 0.0, resolved)


# --- the steps of a plan ----------------------------------------------------------------


def test_an_immediate_switch_promotes_at_its_only_step() -> None:
    plan = make_plan(Strategy.IMMEDIATE)
    assert step_to(plan, 0, 1000.0) == Promote(step=0)


def test_a_gradual_plan_steps_up_each_period_and_promotes_after_the_last() -> None:
    clock = ManualClock()
    op = operation(Strategy.GRADUAL, {"steps": 4, "duration": "40s"})
    first = step_to(op.plan, 0, clock())
    assert first == StepUp(0, 0.25, clock() + 10)
    assert isinstance(first, StepUp)
    take(op, first)
    shares = [op.share]
    for _ in range(3):
        clock.advance(9.9)
        assert next_move(op, Level.OK, clock()) == Stay()  # not due yet
        clock.advance(0.1)
        move = next_move(op, Level.OK, clock())
        assert isinstance(move, StepUp)
        assert move.next_at == clock() + 10
        take(op, move)
        shares.append(op.share)
    assert shares == [0.25, 0.5, 0.75, 1.0]
    clock.advance(10)
    assert next_move(op, Level.OK, clock()) == Promote()


@pytest.mark.parametrize(("then", "end"), [("revert", Revert()), ("promote", Promote())])
def test_an_ab_test_ends_as_its_then_says(then: str, end: object) -> None:
    clock = ManualClock()
    op = operation(Strategy.AB, {"percentage": 30, "duration": "1h", "then": then})
    first = step_to(op.plan, 0, clock())
    assert first == StepUp(0, 0.3, clock() + 3600)
    assert isinstance(first, StepUp)
    take(op, first)
    assert next_move(op, Level.OK, clock.advance(3599)) == Stay()
    assert next_move(op, Level.OK, clock.advance(1)) == end


def test_a_canary_holds_at_warning_and_goes_on_once_healthy() -> None:
    clock = ManualClock()
    op = operation(Strategy.CANARY, {"initial_percentage": 10, "step_percentage": 45})
    first = step_to(op.plan, 0, clock())
    assert isinstance(first, StepUp)
    take(op, first)
    clock.advance(300)
    assert next_move(op, Level.WARNING, clock()) == Hold(clock() + 300)
    op.next_step_at = clock() + 300
    assert next_move(op, Level.OK, clock.advance(299)) == Stay()
    assert next_move(op, Level.OK, clock.advance(1)) == StepUp(1, 0.55, clock() + 300)


def test_a_gradual_plan_does_not_hold_at_warning() -> None:
    clock = ManualClock()
    op = operation(Strategy.GRADUAL, {"steps": 2, "duration": "20s"})
    first = step_to(op.plan, 0, clock())
    assert isinstance(first, StepUp)
    take(op, first)
    assert next_move(op, Level.WARNING, clock.advance(10)) == StepUp(1, 1.0, clock() + 10)


@pytest.mark.parametrize("strategy", [Strategy.GRADUAL, Strategy.AB, Strategy.CANARY])
def test_a_guarded_plan_rolls_back_when_critical_even_before_a_step_is_due(
    strategy: Strategy,
) -> None:
    clock = ManualClock()
    op = operation(strategy)
    first = step_to(op.plan, 0, clock())
    assert isinstance(first, StepUp)
    take(op, first)
    assert next_move(op, Level.CRITICAL, clock.advance(1)) == RollBack()


def test_an_unguarded_plan_never_rolls_back() -> None:
    op = operation(Strategy.IMMEDIATE)
    assert next_move(op, Level.CRITICAL, 1000.0) == Stay()  # no step is due, ever
    assert not rolls_back_on(op, alert())


# --- alerts ---------------------------------------------------------------------------


def test_only_a_fresh_critical_alert_on_a_running_guarded_target_rolls_back() -> None:
    op = operation()
    assert rolls_back_on(op, alert())
    assert not rolls_back_on(None, alert())
    assert not rolls_back_on(op, alert(Level.WARNING))
    assert not rolls_back_on(op, alert(resolved=True))
    assert not rolls_back_on(op, alert(version="v1"))  # the source: not what is tried
    assert not rolls_back_on(op, replace(alert(), model_id="other"))
    assert not rolls_back_on(operation(status=Status.PENDING), alert())


def test_a_rollback_names_the_metric_and_its_numbers() -> None:
    op = operation()
    reason = why_critical(op, [alert(version="v1"), alert()], requests=40, window=60)
    assert reason == "v2 is critical: error_rate 0.3 >= 0.2 over 40 requests in the last 60s"
    assert why_critical(op, [], requests=3, window=60) == "v2 is critical over 3 requests"


# --- requests -------------------------------------------------------------------------


@dataclass
class FakePoolView:
    """A pool as a switch's check reads it: states and the fit answer, set by the test."""

    states: dict[str, ModelState] = field(default_factory=dict)
    misfit: list[str] = field(default_factory=list)
    asked: list[tuple[str, ...]] = field(default_factory=list)

    def state(self, model: str) -> ModelState:
        return self.states.get(model, ModelState.UNLOADED)

    def fit_problems(self, *models: str) -> list[str]:
        self.asked.append(models)
        return list(self.misfit)


RECORDS = {"v1": "chat", "v2": "chat@v2"}


def problems(
    target: str = "v2",
    strategy: str = "canary",
    settings: dict[str, Any] | None = None,
    *,
    active: Operation | None = None,
    pool: FakePoolView | None = None,
) -> list[str]:
    return switch_problems(
        "chat",
        target,
        strategy,
        settings,
        records=RECORDS,
        serving="v1",
        active=active,
        pool=pool or FakePoolView(),
    )


def test_a_good_switch_has_no_problems_and_asks_whether_both_fit() -> None:
    pool = FakePoolView()
    assert problems(pool=pool) == []
    assert pool.asked == [("chat", "chat@v2")]


def test_every_problem_of_a_switch_is_listed_at_once() -> None:
    found = problems("v9", "canary", {"initial_percentag": 5, "period": "soon"}, active=operation())
    assert len(found) == 4
    assert "did you mean 'initial_percentage'" in found[0]
    assert found[1].startswith("period:")
    assert found[2] == "rollout op-1 of 'chat' is running; wait or abort it"
    assert "no version 'v9'" in found[3]
    assert "v1, v2" in found[3]
    assert problems(strategy="canery")[0].startswith("unknown strategy 'canery'")


def test_a_switch_to_the_serving_version_asks_nothing_of_the_pool() -> None:
    pool = FakePoolView(misfit=["never asked"])
    assert problems("v1", pool=pool) == ["'v1' already serves all of 'chat''s traffic"]
    assert pool.asked == []


def test_a_failed_target_and_a_misfit_are_both_reported() -> None:
    pool = FakePoolView({"chat@v2": ModelState.FAILED}, misfit=["too big together"])
    assert problems(pool=pool) == [
        "chat@v2 failed to load; load it explicitly to try again",
        "too big together",
    ]


def test_a_version_stays_while_it_comes_from_the_config_carries_traffic_or_rolls_out() -> None:
    assert unregister_problems("v3", "runtime", 0.0, None) == []
    assert unregister_problems("v1", "config", 1.0, operation(source="v1")) == [
        "'v1' is declared in the config file; remove it there",
        "'v1' carries traffic; switch away from it first",
        "'v1' is part of rollout op-1; abort it first",
    ]
    assert unregister_problems("v3", "runtime", 0.0, operation()) == []


def test_a_rollback_goes_back_on_the_last_completed_switch_to_what_serves() -> None:
    older = operation(status=Status.COMPLETED, op_id="op-1", source="v0", target="v2")
    aborted = operation(status=Status.ABORTED, op_id="op-2", source="v3", target="v2")
    newer = operation(status=Status.COMPLETED, op_id="op-3", source="v1", target="v2")
    elsewhere = operation(status=Status.COMPLETED, op_id="op-4", source="v2", target="v1")
    history = [older, aborted, newer, elsewhere]
    assert to_roll_back(history, "chat", "v2") is newer
    assert to_roll_back(history, "chat", "v1") is elsewhere
    assert to_roll_back(history, "chat", "v9") is None
    assert to_roll_back(history, "other", "v2") is None


def test_the_oldest_ended_operations_are_forgotten_first_and_no_live_one() -> None:
    live = operation(status=Status.RUNNING, op_id="op-0")
    ended = [operation(status=Status.COMPLETED, op_id=f"op-{n}") for n in range(1, 4)]
    history = [live, *ended]
    assert to_forget(history, keep=4) == []
    assert to_forget(history, keep=2) == ended[:2]
    assert to_forget(history, keep=0) == ended


def test_an_operation_read_back_unended_was_interrupted_if_its_source_remains() -> None:
    assert interrupted(operation(status=Status.RUNNING), ["v1", "v2"])
    assert interrupted(operation(status=Status.PENDING), ["v1"])
    assert not interrupted(operation(status=Status.RUNNING), ["v2"])
    assert not interrupted(operation(status=Status.COMPLETED), ["v1", "v2"])
