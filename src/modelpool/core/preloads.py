"""Preloads: models loaded ahead of any request, into room nobody else needs.

llama-swap's ``hooks.on_startup.preload`` and seed 003's ``preload_model(id,
priority=10)``. A preload is the least urgent load there is: it starts only when no
request waits, in priority order (lower first, as a model's ``priority``), and only
into free room or by displacing a preload of lower priority. It never evicts a model
that traffic brought in, and never a more important preload: then it is skipped, and
says why. ``PendingPreloads`` holds those not yet started; ``preload_refusal`` is the
pure rule.
"""

from __future__ import annotations

import heapq
import itertools

from modelpool.core.lease import Waiter
from modelpool.core.planner import Go
from modelpool.types import ModelId


class PendingPreloads:
    """Preloads waiting for a quiet moment, most important first."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Waiter]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, waiter: Waiter) -> None:
        heapq.heappush(self._heap, (waiter.priority, next(self._order), waiter))

    def pop(self) -> Waiter:
        return heapq.heappop(self._heap)[2]

    def remove(self, waiter: Waiter) -> bool:
        """Forget ``waiter`` (its caller left); False if it is not pending."""
        kept = [entry for entry in self._heap if entry[2] is not waiter]
        if len(kept) == len(self._heap):
            return False
        self._heap = kept
        heapq.heapify(self._heap)
        return True

    def take(self, model_id: ModelId) -> list[Waiter]:
        """Every pending preload of ``model_id`` (the model is gone, or loads anyway)."""
        taken = [entry[2] for entry in self._heap if entry[2].model_id == model_id]
        if taken:
            self._heap = [entry for entry in self._heap if entry[2].model_id != model_id]
            heapq.heapify(self._heap)
        return taken

    def drain(self) -> list[Waiter]:
        waiters = [entry[2] for entry in sorted(self._heap)]
        self._heap = []
        return waiters


def preload_refusal(plan: Go, priority: int, preloaded: dict[ModelId, int | None]) -> str | None:
    """Why a preload of ``priority`` may not carry ``plan`` out (None: it may).

    ``preloaded`` gives each victim's preload priority, None for a model traffic brought
    in: only preloads of a larger number (less important) may make way.
    """
    for victim in plan.victims:
        rank = preloaded.get(victim.model_id)
        if rank is None:
            return f"it would evict {victim.model_id}, which requests brought in"
        if rank <= priority:
            return f"it would evict {victim.model_id}, a preload of priority {rank}"
    return None
