"""First in, first out: unload the model that was loaded earliest."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from modelpool.core.ports import Candidate, EvictionContext
from modelpool.policies.base import evict_in_order
from modelpool.types import ModelId

_loaded_at = attrgetter("loaded_at")


class FIFOPolicy:
    """Evicts the oldest ``loaded_at`` first, ignoring use: simple and predictable,
    every model gets the same residency before it is reconsidered."""

    name = "fifo"

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        return evict_in_order(candidates, context.need, map(_loaded_at, candidates))

    def __repr__(self) -> str:
        return "FIFOPolicy()"
