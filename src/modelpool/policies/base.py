"""What every eviction policy shares: pick victims in rank order until enough is freed.

A policy only says how to rank candidates, as sort columns (smallest goes first); this
module does the rest of the contract in ``core.ports.EvictionPolicy``: distinct ids,
stop as soon as the freed bytes reach ``need``, everything in order if that is not
enough, remaining ties broken by model id so the answer never depends on input order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from operator import attrgetter

from modelpool.core.ports import Candidate
from modelpool.types import Bytes, ModelId

_model_id = attrgetter("model_id")


def evict_in_order(
    candidates: Sequence[Candidate], need: Bytes, *columns: Iterable[float]
) -> list[ModelId]:
    """Ids of ``candidates`` in ascending ``(*columns, model_id)`` order, just enough
    to free ``need`` bytes (all of them if even that is not enough).

    Each column holds one sort value per candidate, in the candidates' order: the
    first column ranks, the next breaks its ties, and so on. Columns may be lazy
    (``map(attrgetter("last_used"), candidates)``, ``map(key, candidates)``); with
    ``need <= 0`` nothing is consumed. Heap selection: O(n) to rank, O(log n) per
    victim, so a few victims among thousands cost little more than their keys. An id
    that appears twice counts once, at its first place in eviction order.
    """
    if need <= 0 or not candidates:
        return []
    n = len(candidates)
    heap = list(zip(*columns, map(_model_id, candidates), range(n), strict=True))
    heapq.heapify(heap)
    victims: list[ModelId] = []
    chosen: set[ModelId] = set()
    freed = 0
    while heap and freed < need:
        entry = heapq.heappop(heap)
        model_id: ModelId = entry[-2]
        if model_id in chosen:
            continue
        chosen.add(model_id)
        victims.append(model_id)
        freed += candidates[entry[-1]].bytes
    return victims
