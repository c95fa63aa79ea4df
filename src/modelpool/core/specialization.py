"""How well a model's tags suit a task type (seed 000's specialization scores)."""

from __future__ import annotations

from collections.abc import Iterable

EXACT, GENERAL, OTHER = 1.0, 0.7, 0.3


def specialization_score(tags: Iterable[str], task_type: str) -> float:
    """1.0 when the model is tagged for the task, 0.7 when it is "general", else 0.3."""
    tag_set = set(tags)
    if task_type in tag_set:
        return EXACT
    if "general" in tag_set:
        return GENERAL
    return OTHER
