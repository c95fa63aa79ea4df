"""What a rollout does next: pure decisions, carried out by the ``RolloutManager``.

Each function here looks at an operation, its target's health level and the clock's
reading (passed in as ``now``) and answers what should happen: take the next step,
hold, roll back, finish; or what is wrong with a switch request. None of them awaits,
does I/O, logs or changes what it is given: the manager owns the operations and acts
on the answers through the pool, the way the core's scheduler acts on its planner's.
Their tests call them directly with a manual clock.

A running operation's life, one call at a time::

    step_to(plan, 0, now)          the first step, once both versions are ready
    next_move(op, level, now)      on each tick: RollBack, Stay, Hold or step_to(...)
    rolls_back_on(op, alert)       when an alert fires: a guarded target gone critical
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from modelpool.core.states import ModelState
from modelpool.errors import UnknownVersion
from modelpool.monitor.health import Alert, Level
from modelpool.rollout.operation import Operation, Status
from modelpool.rollout.strategies import Plan, PlanError, Strategy, make_plan

# --- moves: what a running operation does next ----------------------------------------


@dataclass(frozen=True)
class Stay:
    """Nothing is due yet."""


@dataclass(frozen=True)
class Hold:
    """Do not step up while the target is at warning; look again at ``until``."""

    until: float


@dataclass(frozen=True)
class StepUp:
    """Give the target ``share`` of traffic (step ``step`` of the plan) until ``next_at``."""

    step: int
    share: float
    next_at: float


@dataclass(frozen=True)
class Promote:
    """All traffic to the target: the operation completes and the source is unloaded."""

    step: int | None = None
    """The plan's step taken on the way (an unwatched plan's only step), if any."""


@dataclass(frozen=True)
class Revert:
    """An A/B test is over: all traffic back on the source, completed; target unloaded."""


@dataclass(frozen=True)
class RollBack:
    """The target turned critical: back to the source, rolled back; target unloaded."""


Move = Stay | Hold | StepUp | Promote | Revert | RollBack


def step_to(plan: Plan, step: int, now: float) -> Move:
    """What taking step ``step`` of ``plan`` at ``now`` means."""
    if step >= len(plan.shares):
        return Revert() if plan.then == "revert" else Promote()
    if plan.period <= 0 and not plan.guarded:
        return Promote(step)  # immediate: one step, nothing to watch
    return StepUp(step, plan.shares[step], now + plan.period)


def next_move(op: Operation, level: Level, now: float) -> Move:
    """What running ``op`` does at ``now``, its target's health being at ``level``."""
    if op.plan.guarded and level is Level.CRITICAL:
        return RollBack()
    if op.next_step_at is None or now < op.next_step_at:
        return Stay()
    if op.plan.hold_on_warning and level is Level.WARNING:
        return Hold(now + op.plan.period)
    return step_to(op.plan, op.step + 1, now)


def rolls_back_on(op: Operation | None, alert: Alert) -> bool:
    """Whether ``alert`` ends ``op`` at once: a guarded plan's target turned critical."""
    return (
        op is not None
        and op.status is Status.RUNNING
        and op.plan.guarded
        and (alert.model_id, alert.version) == (op.model, op.target)
        and alert.level is Level.CRITICAL
        and not alert.resolved
    )


def why_critical(op: Operation, alerts: Iterable[Alert], requests: int, window: float) -> str:
    """The reason a rollback gives: the alert on ``op``'s target, with its numbers."""
    for alert in alerts:
        if (alert.model_id, alert.version) == (op.model, op.target):
            return (
                f"{op.target} is critical: {alert.metric} {alert.value:.3g} >= "
                f"{alert.threshold:.3g} over {requests} requests in the last {window:.0f}s"
            )
    return f"{op.target} is critical over {requests} requests"


# --- requests: what is wrong with a switch, an unregister, a rollback -------------------


class PoolView(Protocol):
    """What a switch's check reads of the pool (``ModelPool`` is one): no changes."""

    def state(self, model: str) -> ModelState: ...

    def fit_problems(self, *models: str) -> list[str]: ...


def switch_problems(
    model: str,
    target: str,
    strategy: str | Strategy,
    settings: Mapping[str, Any] | None,
    *,
    records: Mapping[str, str],
    serving: str,
    active: Operation | None,
    pool: PoolView,
) -> list[str]:
    """Every reason a switch of ``model`` to version ``target`` cannot start.

    ``records``: each version of ``model`` and its pool record; ``serving``: the
    version all traffic is on; ``active``: ``model``'s operation not yet ended.
    """
    problems: list[str] = []
    try:
        make_plan(strategy, settings)
    except PlanError as error:
        problems.extend(error.problems)
    if active is not None:
        problems.append(f"rollout {active.id} of {model!r} is {active.status}; wait or abort it")
    record = records.get(target)
    if record is None:
        problems.append(str(UnknownVersion(model, target, list(records))))
    elif target == serving:
        problems.append(f"{target!r} already serves all of {model!r}'s traffic")
    else:
        if pool.state(record) is ModelState.FAILED:
            problems.append(f"{record} failed to load; load it explicitly to try again")
        problems.extend(pool.fit_problems(records[serving], record))
    return problems


def unregister_problems(
    version: str, origin: str, share: float, active: Operation | None
) -> list[str]:
    """Every reason ``version`` (``origin``, carrying ``share`` of traffic) must stay."""
    problems = []
    if origin != "runtime":
        problems.append(f"{version!r} is declared in the config file; remove it there")
    if share:
        problems.append(f"{version!r} carries traffic; switch away from it first")
    if active is not None and version in (active.source, active.target):
        problems.append(f"{version!r} is part of rollout {active.id}; abort it first")
    return problems


def to_roll_back(operations: Iterable[Operation], model: str, serving: str) -> Operation | None:
    """The last completed operation that put ``serving`` in place for ``model``."""
    done = [
        op
        for op in operations
        if op.model == model and op.status is Status.COMPLETED and op.target == serving
    ]
    return done[-1] if done else None


def to_forget(operations: Iterable[Operation], keep: int) -> list[Operation]:
    """The oldest ended operations to drop so that at most ``keep`` are kept
    (``operations`` oldest first; one not ended is never dropped)."""
    kept = list(operations)
    ended = [op for op in kept if op.ended]
    return ended[: max(0, len(kept) - keep)]


def interrupted(op: Operation, versions: Iterable[str]) -> bool:
    """Whether ``op``, read back at start, was cut short by a stop or a crash and can
    be ended safely on its source (which must still be a version of its model)."""
    return not op.ended and op.source in set(versions)
