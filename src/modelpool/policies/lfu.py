"""Least frequently used: unload the model that has served the fewest requests."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from modelpool.core.ports import Candidate, EvictionContext
from modelpool.policies.base import evict_in_order
from modelpool.types import ModelId

_use_count = attrgetter("use_count")
_last_used = attrgetter("last_used")


class LFUPolicy:
    """Evicts the fewest ``use_count`` first, ties to the older ``last_used``: under a
    stable workload, what was asked for least will be asked for least again."""

    name = "lfu"

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        return evict_in_order(
            candidates,
            context.need,
            map(_use_count, candidates),
            map(_last_used, candidates),
        )

    def __repr__(self) -> str:
        return "LFUPolicy()"
