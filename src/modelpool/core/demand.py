"""What tasks are asked for lately, as shares per tag (for the specialization policy)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence

DEMAND_WINDOW = 256
"""Recent requests whose models' tags make up the demand."""


class DemandTracker:
    """The tags of the last ``window`` requests; each request's tags share one unit.

    Requests are counted per distinct tag set as they enter and leave the window, so
    ``shares`` (asked at every scheduling decision) costs the number of distinct tag
    sets, a handful, rather than the window: recounting it was the largest single cost
    of a simulator replay.
    """

    def __init__(self, window: int = DEMAND_WINDOW) -> None:
        self._window = window
        self._recent: deque[tuple[str, ...]] = deque()
        self._counts: Counter[tuple[str, ...]] = Counter()

    def note(self, tags: Sequence[str]) -> None:
        key = tuple(tags)
        self._recent.append(key)
        self._counts[key] += 1
        if len(self._recent) > self._window:
            gone = self._recent.popleft()
            self._counts[gone] -= 1
            if not self._counts[gone]:
                del self._counts[gone]

    def shares(self) -> dict[str, float]:
        counts: dict[str, float] = {}
        for tags, n in self._counts.items():
            for tag in tags:
                counts[tag] = counts.get(tag, 0.0) + n / len(tags)
        total = sum(counts.values())
        return {tag: count / total for tag, count in counts.items()} if total else {}
