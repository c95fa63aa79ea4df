"""Versions of a model and safe switches between them: routing, rollouts, rollback.

``RolloutManager`` is the entry point, a thin shell: ``decisions`` says what an
operation does next (pure), ``runner`` carries it out on the pool, ``operation`` is one
switch with its status (a transition table) and history, ``rollouts_file`` is the state
file; ``strategies`` turns a strategy's settings into a plan of steps, ``routing``
splits traffic (sticky by a request key). docs/design.md draws the map.
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
