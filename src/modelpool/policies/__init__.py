"""The built-in eviction policies, each a pure ``victims(candidates, context)``.

Look them up by name through ``modelpool.plugins.POLICIES``. To write another, rank
the candidates with one or more sort columns and let ``evict_in_order`` (``base.py``)
pick the victims; register it under the entry-point group ``modelpool.policies``.
"""

from __future__ import annotations

from modelpool.core.specialization import specialization_score
from modelpool.policies.base import evict_in_order
from modelpool.policies.cost_aware import CostAwarePolicy
from modelpool.policies.fifo import FIFOPolicy
from modelpool.policies.hybrid import HybridPolicy
from modelpool.policies.lfu import LFUPolicy
from modelpool.policies.lru import LRUPolicy
from modelpool.policies.memory_pressure import MemoryPressurePolicy
from modelpool.policies.priority import PriorityPolicy
from modelpool.policies.recency_cost import RecencyCostPolicy
from modelpool.policies.specialization import SpecializationPolicy

__all__ = [
    "CostAwarePolicy",
    "FIFOPolicy",
    "HybridPolicy",
    "LFUPolicy",
    "LRUPolicy",
    "MemoryPressurePolicy",
    "PriorityPolicy",
    "RecencyCostPolicy",
    "SpecializationPolicy",
    "evict_in_order",
    "specialization_score",
]
