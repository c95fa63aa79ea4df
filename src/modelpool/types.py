"""Type aliases and small enums shared by every layer."""

from __future__ import annotations

from enum import StrEnum

ModelId = str
"""A model's id as configured (``"smollm2"``), never containing a path separator."""

DeviceId = str
"""A memory domain: ``"cuda:0"``, ``"cpu"``; ``"auto"`` only in specs, never in the ledger."""

Bytes = int
"""A size in bytes."""


class ModelSwitchingStrategy(StrEnum):
    """The built-in eviction strategies, by name (seed 000 API).

    ``pool.set_switching_strategy(ModelSwitchingStrategy.HYBRID)`` and
    ``pool.set_switching_strategy("hybrid")`` mean the same thing.
    """

    LRU = "lru"
    LFU = "lfu"
    FIFO = "fifo"
    PRIORITY = "priority"
    SPECIALIZATION = "specialization"
    MEMORY_PRESSURE = "memory_pressure"
    HYBRID = "hybrid"
    COST_AWARE = "cost_aware"
    RECENCY_COST = "recency_cost"
