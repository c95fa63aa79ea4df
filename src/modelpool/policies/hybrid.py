"""Hybrid: the seed's weighted score of idle time, load count, current tasks and errors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from operator import attrgetter
from types import MappingProxyType

from modelpool.core.ports import Candidate, EvictionContext
from modelpool.policies.base import evict_in_order
from modelpool.types import ModelId

DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"idle": 0.3, "loads": 0.2, "tasks": 0.4, "errors": 0.1}
)
"""Seed 000's weights: time since last use 30%, load count 20%, current tasks 40%,
errors 10%."""

_last_used = attrgetter("last_used")
_load_count = attrgetter("load_count")
_current_tasks = attrgetter("current_tasks")
_error_count = attrgetter("error_count")
_factors = attrgetter("last_used", "load_count", "current_tasks", "error_count")


class HybridPolicy:
    """Evicts the highest score first, ties to LRU, where score =
    w_idle*idle + w_loads*(1 - loads) + w_tasks*(1 - tasks) + w_errors*errors, each
    factor divided by its maximum over the candidates (0 when that maximum is 0).

    Seed 000's code adds ``load_count`` and ``current_tasks`` as they are, but its
    comments say "fewer loads = higher score" and "fewer tasks = higher score"; we
    follow the comments (with "older" and "more errors = higher score"), since a model
    reloaded often or busy with tasks is one worth keeping.
    """

    name = "hybrid"

    def __init__(self, *, weights: Mapping[str, float] | None = None) -> None:
        merged = dict(DEFAULT_WEIGHTS)
        for factor, weight in (weights or {}).items():
            if factor not in DEFAULT_WEIGHTS:
                known = ", ".join(DEFAULT_WEIGHTS)
                raise ValueError(f"hybrid weights: unknown factor {factor!r} (known: {known})")
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"hybrid weights: {factor!r} must be a number, got {weight!r}")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(
                    f"hybrid weights: {factor!r} must be finite and >= 0, got {weight!r}"
                )
            merged[factor] = float(weight)
        if not any(merged.values()):
            raise ValueError("hybrid weights: all are zero; at least one must be > 0")
        self._idle = merged["idle"]
        self._loads = merged["loads"]
        self._tasks = merged["tasks"]
        self._errors = merged["errors"]

    @property
    def weights(self) -> dict[str, float]:
        """The weights in effect (defaults overridden by the constructor's)."""
        return {
            "idle": self._idle,
            "loads": self._loads,
            "tasks": self._tasks,
            "errors": self._errors,
        }

    def scores(self, candidates: Sequence[Candidate], now: float) -> dict[ModelId, float]:
        """Each candidate's score (higher = evicted sooner), to explain a decision."""
        column = self._negated_scores(candidates, now)
        return {c.model_id: -key for c, key in zip(candidates, column, strict=True)}

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        if context.need <= 0 or not candidates:
            return []
        return evict_in_order(
            candidates,
            context.need,
            self._negated_scores(candidates, context.now),
            map(_last_used, candidates),
        )

    def _negated_scores(self, candidates: Sequence[Candidate], now: float) -> list[float]:
        if not candidates:
            return []
        # Each factor's weight / max over the candidates, once per call; a factor whose
        # max is 0 contributes 0 (to every candidate alike).
        max_idle = now - min(map(_last_used, candidates))
        max_loads = max(map(_load_count, candidates))
        max_tasks = max(map(_current_tasks, candidates))
        max_errors = max(map(_error_count, candidates))
        w_idle = self._idle / max_idle if max_idle > 0 else 0.0
        w_loads = self._loads / max_loads if max_loads > 0 else 0.0
        w_tasks = self._tasks / max_tasks if max_tasks > 0 else 0.0
        w_errors = self._errors / max_errors if max_errors > 0 else 0.0
        constant = self._loads + self._tasks
        # -score, so that the smallest (first evicted) is the highest score.
        return [
            -(
                constant
                + w_idle * (now - last_used if last_used < now else 0.0)
                - w_loads * load_count
                - w_tasks * current_tasks
                + w_errors * error_count
            )
            for last_used, load_count, current_tasks, error_count in map(_factors, candidates)
        ]

    def __repr__(self) -> str:
        return f"HybridPolicy(weights={self.weights!r})"
