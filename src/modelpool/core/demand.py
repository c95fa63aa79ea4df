"""What tasks are asked for lately, as shares per tag (for the specialization policy)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

DEMAND_WINDOW = 256
"""Recent requests whose models' tags make up the demand."""


class DemandTracker:
    """The tags of the last ``window`` requests; each request's tags share one unit."""

    def __init__(self, window: int = DEMAND_WINDOW) -> None:
        self._recent: deque[Sequence[str]] = deque(maxlen=window)

    def note(self, tags: Sequence[str]) -> None:
        self._recent.append(tags)

    def shares(self) -> dict[str, float]:
        counts: dict[str, float] = {}
        for tags in self._recent:
            for tag in tags:
                counts[tag] = counts.get(tag, 0.0) + 1.0 / len(tags)
        total = sum(counts.values())
        return {tag: count / total for tag, count in counts.items()} if total else {}
