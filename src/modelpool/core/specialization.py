"""How well a model's tags suit a task type (seed 000's specialization scores)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from modelpool.core.states import ModelState
from modelpool.types import ModelId

if TYPE_CHECKING:
    from modelpool.core.record import ModelRecord

SPECIALIST = 1.0
"""Score of a model tagged with the task type itself."""
GENERALIST = 0.7
"""Score of a model tagged ``"general"`` for a task type it is not tagged with."""
OTHER = 0.3
"""Score of any other model: it can try, but it is not made for the task."""


def specialization_score(tags: Iterable[str], task_type: str) -> float:
    """1.0 when the model is tagged for the task, 0.7 when it is "general", else 0.3.

    Used by the specialization policy and by ``get_best_model_for_task``.
    """
    tag_set = set(tags)
    if task_type in tag_set:
        return SPECIALIST
    if "general" in tag_set:
        return GENERALIST
    return OTHER


def best_model_for_task(records: Iterable[ModelRecord], task_type: str) -> ModelId | None:
    """The model whose tags suit ``task_type`` best, weighted by its health (1 − error
    rate); ties go to what is resident, then to the more important model."""

    def rank(record: ModelRecord) -> tuple[float, bool, int, str]:
        fit = specialization_score(record.spec.tags, task_type) * (1.0 - record.stats.error_rate)
        return (-fit, not record.serving, record.spec.priority, record.model_id)

    candidates = list(records)
    healthy = [r for r in candidates if r.state is not ModelState.FAILED]
    pool = healthy or candidates
    return min(pool, key=rank).model_id if pool else None
