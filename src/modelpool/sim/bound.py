"""The offline reference: a policy that knows when each model is wanted next.

Belady's rule (evict what is needed furthest in the future) is optimal when every
item has one size and one cost. Models have neither, so this policy makes it size- and
cost-aware: a model's *value* is what evicting it costs (its reload seconds) divided
by the bytes it frees and by how long until it is wanted again, and the lowest value
goes first. A model never wanted again is worth nothing.

It is a reference, not a guarantee: with sizes and costs the exact problem is NP-hard,
and a strategy can beat this rule on a given trace. ``optimum.py`` computes the exact
optimum where the instance is small enough. The policy is pure, as every policy must
be: what it knows of the future is the workload, read once when it is built.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from modelpool.core.ports import Candidate, EvictionContext
from modelpool.policies.base import evict_in_order
from modelpool.sim.models import ModelSet
from modelpool.sim.workload import Workload
from modelpool.types import ModelId

BOUND_LABEL = "bound (furthest next use)"


class FurthestNextUsePolicy:
    """Evicts the model with the lowest reload cost per byte per second until its next
    use; ties go to the one used furthest away."""

    name = "furthest_next_use"

    def __init__(self, workload: Workload, models: ModelSet, *, warm_tier: bool = True) -> None:
        self._arrivals: dict[ModelId, list[float]] = {}
        for request in workload.requests:
            self._arrivals.setdefault(request.model, []).append(request.time)
        # What bringing a model back costs: a restore when it can go to host RAM.
        self._reload = {
            m.id: m.restore_seconds
            if warm_tier and m.restore_seconds is not None
            else m.load_seconds
            for m in models.models
        }

    def next_use(self, model_id: ModelId, now: float) -> float:
        """Seconds from ``now`` to the model's next request (inf: none)."""
        times = self._arrivals.get(model_id, ())
        at = bisect.bisect_left(times, now)
        return times[at] - now if at < len(times) else math.inf

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        if context.need <= 0 or not candidates:
            return []
        distances = [self.next_use(c.model_id, context.now) for c in candidates]
        values = [
            self._reload.get(c.model_id, c.load_seconds) / max(c.bytes, 1) / max(d, 1e-9)
            for c, d in zip(candidates, distances, strict=True)
        ]
        return evict_in_order(candidates, context.need, values, [-d for d in distances])
