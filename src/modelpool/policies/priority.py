"""Priority: unload the least important model first (seed API: 1 critical, 10 background)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, neg

from modelpool.core.ports import Candidate, EvictionContext
from modelpool.policies.base import evict_in_order
from modelpool.types import ModelId

_priority = attrgetter("priority")
_last_used = attrgetter("last_used")


class PriorityPolicy:
    """Evicts the highest ``priority`` number first (lower is more important), ties
    to LRU: keeps the models that serve high-priority work, for tiered service."""

    name = "priority"

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        return evict_in_order(
            candidates,
            context.need,
            map(neg, map(_priority, candidates)),
            map(_last_used, candidates),
        )

    def __repr__(self) -> str:
        return "PriorityPolicy()"
