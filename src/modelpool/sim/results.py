"""What one replay measured: the figures a strategy is judged by."""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from typing import Any

from modelpool.core.stats import percentile
from modelpool.types import Bytes


@dataclass(frozen=True, slots=True)
class RunResult:
    """One strategy's replay of one workload. Waits are the seconds a request spent
    before its model could serve it (loads, restores, evictions it waited for, and
    queueing behind them); a hit waits 0."""

    label: str
    """The row's name: a strategy, ``exclusive``, or the bound."""
    requests: int
    served: int
    rejected: int
    """Requests for a model that can never fit the budget."""
    hits: int
    cold_loads: int
    warm_restores: int
    offloads: int
    unloads: int
    total_wait: float
    p95_wait: float
    max_wait: float
    over_slo: int
    """Requests that waited longer than the SLO."""
    slo: float
    bytes_moved: Bytes
    """Weights copied: cold loads, restores and offloads."""
    load_seconds: float
    """Seconds spent in loads and restores (summed over models; they may overlap)."""
    simulated_seconds: float
    wall_seconds: float
    """How long the replay took to compute."""
    exact: bool = False
    """True for the exact offline optimum: waits are its load costs in arrival order."""
    preloads: int = 0
    """Models the set preloads that were resident before any request needed them."""

    @property
    def hit_rate(self) -> float:
        return self.hits / self.served if self.served else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hit_rate"] = self.hit_rate
        return data


def wait_figures(waits: list[float], slo: float) -> dict[str, Any]:
    """The ``RunResult`` fields that come from the served requests' waits (sorted)."""
    return {
        "served": len(waits),
        "total_wait": math.fsum(waits),
        "p95_wait": percentile(waits, 95),
        "max_wait": waits[-1] if waits else 0.0,
        "over_slo": len(waits) - bisect.bisect_right(waits, slo),
        "slo": slo,
    }
