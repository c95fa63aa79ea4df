"""Memory pressure: unload the largest model first."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, neg

from modelpool.core.ports import Candidate, EvictionContext
from modelpool.policies.base import evict_in_order
from modelpool.types import ModelId

_bytes = attrgetter("bytes")
_last_used = attrgetter("last_used")


class MemoryPressurePolicy:
    """Evicts the largest ``bytes`` first, ties to LRU: frees the memory with the
    fewest unloads (and so the fewest later reloads to pay for)."""

    name = "memory_pressure"

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        return evict_in_order(
            candidates,
            context.need,
            map(neg, map(_bytes, candidates)),
            map(_last_used, candidates),
        )

    def __repr__(self) -> str:
        return "MemoryPressurePolicy()"
