"""Specialization: keep the models whose tags match what is being asked for now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter

from modelpool.core.ports import Candidate, EvictionContext
from modelpool.core.specialization import specialization_score
from modelpool.policies.base import evict_in_order
from modelpool.types import ModelId

_tags = attrgetter("tags")
_last_used = attrgetter("last_used")


class SpecializationPolicy:
    """Evicts the lowest demand score first, ties to LRU, where a model's score is
    the sum over ``context.demand`` of weight * ``specialization_score(tags, task)``:
    the models made for today's work stay. With no demand all score 0: plain LRU."""

    name = "specialization"

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        if context.need <= 0 or not candidates:
            return []
        demand = context.demand
        # Models share a handful of tag sets: score each distinct one once per call.
        scores = {tags: _demand_score(tags, demand) for tags in set(map(_tags, candidates))}
        return evict_in_order(
            candidates,
            context.need,
            map(scores.__getitem__, map(_tags, candidates)),
            map(_last_used, candidates),
        )

    def __repr__(self) -> str:
        return "SpecializationPolicy()"


def _demand_score(tags: tuple[str, ...], demand: Mapping[str, float]) -> float:
    return sum(weight * specialization_score(tags, task) for task, weight in demand.items())
