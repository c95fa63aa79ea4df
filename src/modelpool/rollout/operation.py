"""One rollout operation: which version goes where, how far it got, and its history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from modelpool.errors import IllegalTransition
from modelpool.rollout.strategies import Plan, Strategy, make_plan


class Status(StrEnum):
    """Where an operation is in its life; ``TRANSITIONS`` is the only way it moves.

        PENDING → RUNNING        both versions are ready: the first step moves traffic
        PENDING → FAILED         a version could not be loaded (or fit); nothing moved
        PENDING → ABORTED        an operator (or a restart) stopped it while it loaded
        PENDING → ROLLED_BACK    an operator rolled its model back while it loaded
        RUNNING → COMPLETED      the plan's last step: promoted, or an A/B test reverted
        RUNNING → ROLLED_BACK    the target turned critical, or an operator rolled back
        RUNNING → ABORTED        an operator (or a restart) stopped it

    The four ended states go nowhere: going back is a new operation. A load that fails
    once the operation runs (RUNNING → FAILED) cannot happen: the versions load, and
    are pinned, before the first step.
    """

    PENDING = "pending"  # loading the versions; no traffic has moved
    RUNNING = "running"  # the target takes its share of traffic, step by step
    COMPLETED = "completed"  # the plan ran to its end (the target promoted, or A/B reverted)
    ROLLED_BACK = "rolled_back"  # traffic went back to the source: unhealthy, or asked
    ABORTED = "aborted"  # stopped by an operator (or a restart); traffic back on the source
    FAILED = "failed"  # could not start (the target did not load or fit); nothing moved


ENDED = frozenset({Status.COMPLETED, Status.ROLLED_BACK, Status.ABORTED, Status.FAILED})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.RUNNING, Status.FAILED, Status.ABORTED, Status.ROLLED_BACK}),
    Status.RUNNING: frozenset({Status.COMPLETED, Status.ROLLED_BACK, Status.ABORTED}),
    **{status: frozenset() for status in ENDED},
}


def check_transition(operation_id: str, old: Status, new: Status) -> None:
    """Raise ``IllegalTransition`` unless ``old -> new`` is in the table."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"rollout {operation_id}: illegal transition {old} -> {new}")


def wall_time(seconds: float) -> str:
    """A wall-clock time as people and JSON read it (UTC, ISO 8601)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


@dataclass(eq=False)
class Operation:
    """A switch of ``model`` from ``source`` to ``target`` (version names)."""

    id: str
    model: str
    source: str
    target: str
    strategy: Strategy
    settings: dict[str, Any]
    plan: Plan
    created: float
    """Wall-clock seconds."""
    status: Status = Status.PENDING
    """Changed only through ``move_to`` (checked against ``TRANSITIONS``)."""
    step: int = -1
    """Index into ``plan.shares``; -1 before traffic moves."""
    share: float = 0.0
    """The target's share of traffic now."""
    reason: str | None = None
    """Why it ended as it did (rolled back, aborted, failed)."""
    next_step_at: float | None = None
    """Pool-clock time of the next step (not persisted: a restart ends the operation)."""
    history: list[dict[str, Any]] = field(default_factory=list)

    def move_to(self, status: Status) -> None:
        """Change ``status``, the one way it changes: ``IllegalTransition`` if the table
        forbids it (a bug in the manager, never a client's mistake)."""
        check_transition(self.id, self.status, status)
        self.status = status

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def progress(self) -> float:
        """How far along, 0..1: steps taken out of the plan's (1 once completed)."""
        if self.status is Status.COMPLETED:
            return 1.0
        return max(0, self.step + 1) / (len(self.plan.shares) + (self.plan.period > 0))

    def note(self, now: float, message: str) -> None:
        self.history.append(
            {
                "at": wall_time(now),
                "status": str(self.status),
                "share": self.share,
                "message": message,
            }
        )

    def summary(self) -> dict[str, Any]:
        """What an event or a list shows of it."""
        return {
            "operation_id": self.id,
            "model": self.model,
            "source": self.source,
            "target": self.target,
            "strategy": str(self.strategy),
            "status": str(self.status),
            "share": self.share,
            "progress": self.progress,
            "reason": self.reason,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "settings": self.settings,
            "step": self.step,
            "steps": list(self.plan.shares),
            "period": self.plan.period,
            "created": wall_time(self.created),
            "created_ts": self.created,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Operation:
        """Read back what ``to_dict`` wrote (``KeyError``/``ValueError`` if it is not that)."""
        strategy = Strategy(data["strategy"])
        settings = dict(data["settings"])
        return cls(
            id=str(data["operation_id"]),
            model=str(data["model"]),
            source=str(data["source"]),
            target=str(data["target"]),
            strategy=strategy,
            settings=settings,
            plan=make_plan(strategy, settings),
            created=float(data["created_ts"]),
            status=Status(data["status"]),
            step=int(data["step"]),
            share=float(data["share"]),
            reason=data.get("reason"),
            history=list(data.get("history", [])),
        )
