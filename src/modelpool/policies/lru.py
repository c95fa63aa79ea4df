"""Least recently used: unload the model that has sat idle longest."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from modelpool.core.ports import Candidate, EvictionContext
from modelpool.policies.base import evict_in_order
from modelpool.types import ModelId

_last_used = attrgetter("last_used")


class LRUPolicy:
    """Evicts the oldest ``last_used`` first: what was idle longest is least likely
    to be wanted next (the classic choice for unpredictable access patterns)."""

    name = "lru"

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        return evict_in_order(candidates, context.need, map(_last_used, candidates))

    def __repr__(self) -> str:
        return "LRUPolicy()"
