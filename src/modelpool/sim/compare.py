"""Every strategy, ``exclusive`` and the offline bound on one workload: one comparison."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpool.config import PoolSettings
from modelpool.plugins import POLICIES
from modelpool.sim.bound import BOUND_LABEL, FurthestNextUsePolicy
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet
from modelpool.sim.optimum import OptimumTooLarge, exact_optimum
from modelpool.sim.results import RunResult
from modelpool.sim.workload import Workload
from modelpool.types import Bytes, DeviceId

DEFAULT_STRATEGY: str = PoolSettings().strategy
"""What a pool runs when its config names no strategy."""
EXCLUSIVE_LABEL = "exclusive"


@dataclass(frozen=True)
class Comparison:
    """The rows of one workload's table: strategies first, then the baselines."""

    workload: Workload
    models: ModelSet
    budgets: Mapping[DeviceId, Bytes]
    warm_budget: Bytes
    slo: float
    rows: list[RunResult]
    default: str = DEFAULT_STRATEGY
    optimum_note: str | None = None
    """Why the exact optimum was not computed, when it was not."""
    notes: list[str] = field(default_factory=list)

    def row(self, label: str) -> RunResult | None:
        return next((r for r in self.rows if r.label == label), None)

    @property
    def bound(self) -> RunResult | None:
        return self.row(BOUND_LABEL)

    @property
    def exclusive(self) -> RunResult | None:
        return self.row(EXCLUSIVE_LABEL)

    @property
    def strategies(self) -> list[RunResult]:
        return [r for r in self.rows if r.label in POLICIES.names()]

    def ratio(self, label: str, against: str) -> float | None:
        """``label``'s total wait divided by ``against``'s (None when either is missing;
        inf when only ``against`` waited nothing)."""
        row, base = self.row(label), self.row(against)
        if row is None or base is None:
            return None
        if base.total_wait == 0:
            return 1.0 if row.total_wait == 0 else float("inf")
        return row.total_wait / base.total_wait

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": {
                "name": self.workload.name,
                "description": self.workload.description,
                "requests": len(self.workload.requests),
                "duration_s": self.workload.duration,
                "params": self.workload.params,
            },
            "models": self.models.name,
            "budgets": dict(self.budgets),
            "warm_budget": self.warm_budget,
            "slo_s": self.slo,
            "default_strategy": self.default,
            "optimum_note": self.optimum_note,
            "rows": [row.as_dict() for row in self.rows],
        }


def compare(
    workload: Workload,
    models: ModelSet,
    *,
    strategies: Iterable[str] | None = None,
    budgets: Mapping[DeviceId, Bytes] | None = None,
    warm_budget: Bytes | None = None,
    slo: float = 5.0,
    exact: bool = True,
    settings: PoolSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Replay ``workload`` once per strategy (all registered ones by default), once as
    ``exclusive``, once with the furthest-next-use bound, and solve the exact optimum
    when the instance is small enough. ``settings`` are the scheduler's (its
    ``starvation_limit`` matters most under load), the pool's defaults when None."""
    budgets = dict(models.budgets if budgets is None else budgets)
    warm = models.warm_budget if warm_budget is None else warm_budget
    names = list(strategies) if strategies is not None else POLICIES.names()

    def simulate(policy: Any, **options: Any) -> RunResult:
        label = options.pop("label", policy.name)
        if progress is not None:
            progress(label)
        return Simulation(
            workload,
            models,
            policy,
            budgets=budgets,
            slo=slo,
            label=label,
            settings=settings,
            **options,
        ).run()

    rows = [simulate(POLICIES.get(name)(), warm_budget=warm) for name in names]
    # llama-swap's default: one model at a time, started from disk every time.
    rows.append(
        simulate(POLICIES.get("lru")(), label=EXCLUSIVE_LABEL, exclusive=True, warm_budget=0)
    )
    bound = FurthestNextUsePolicy(workload, models, warm_tier=warm > 0)
    rows.append(simulate(bound, label=BOUND_LABEL, warm_budget=warm))
    note = None
    if exact:
        if progress is not None:
            progress("exact optimum")
        try:
            rows.append(exact_optimum(workload, models, budgets=budgets, warm_budget=warm, slo=slo))
        except OptimumTooLarge as error:
            note = str(error)
    else:
        note = "not asked for"
    return Comparison(workload, models, budgets, warm, slo, rows, optimum_note=note)
