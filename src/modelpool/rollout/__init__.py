"""Versions of a model and safe switches between them: routing, rollouts, rollback.

``RolloutManager`` is the entry point; ``strategies`` turns a strategy's settings into
a plan of steps, ``routing`` splits traffic (sticky by a request key), ``operation``
is one switch with its status and history.
"""

from modelpool.rollout.manager import RolloutManager, SwitchResult
from modelpool.rollout.operation import Operation, Status
from modelpool.rollout.registry import VersionInfo, VersionRegistry
from modelpool.rollout.strategies import Plan, PlanError, Strategy, make_plan

__all__ = [
    "Operation",
    "Plan",
    "PlanError",
    "RolloutManager",
    "Status",
    "Strategy",
    "SwitchResult",
    "VersionInfo",
    "VersionRegistry",
    "make_plan",
]
