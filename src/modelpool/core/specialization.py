"""How well a model's tags suit a task type (seed 000's specialization scores)."""

from __future__ import annotations

from collections.abc import Iterable

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
