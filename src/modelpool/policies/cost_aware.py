"""Cost-aware: keep what is expensive to bring back per byte it holds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import attrgetter

from modelpool.core.ports import Candidate, EvictionContext
from modelpool.core.stats import decayed
from modelpool.policies.base import evict_in_order
from modelpool.types import ModelId

_last_used = attrgetter("last_used")


class CostAwarePolicy:
    """GreedyDual-Size-Frequency (Cherkasova, 1998): evicts the lowest value first,
    ties to LRU, where value = frequency * load_seconds / bytes — how often a model is
    wanted times what it costs to reload, per byte it occupies.

    GDSF ages values with an inflation clock L raised on each eviction; here aging is
    the exponential decay of ``Candidate.frequency`` from when it was counted to
    ``context.now``, so the policy keeps no state between calls and stays pure.
    ``load_seconds`` is floored at ``min_load_seconds`` so an unmeasured model is not
    free to evict; ``bytes`` of 0 counts as 1.
    """

    name = "cost_aware"

    def __init__(self, *, min_load_seconds: float = 0.001) -> None:
        if (
            isinstance(min_load_seconds, bool)
            or not isinstance(min_load_seconds, int | float)
            or not math.isfinite(min_load_seconds)
            or min_load_seconds < 0
        ):
            raise ValueError(
                f"cost_aware: min_load_seconds must be a finite number >= 0, "
                f"got {min_load_seconds!r}"
            )
        self.min_load_seconds = float(min_load_seconds)

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        if context.need <= 0 or not candidates:
            return []
        floor = self.min_load_seconds
        now = context.now
        values = [
            decayed(c.frequency, c.frequency_at, now)
            * (c.load_seconds if c.load_seconds > floor else floor)
            / (c.bytes if c.bytes > 1 else 1)
            for c in candidates
        ]
        return evict_in_order(candidates, context.need, values, map(_last_used, candidates))

    def __repr__(self) -> str:
        return f"CostAwarePolicy(min_load_seconds={self.min_load_seconds!r})"
