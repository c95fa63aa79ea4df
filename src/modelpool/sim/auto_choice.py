"""The decision of ``strategy: auto``: which strategy to run after a replay.

Pure: a table of what each candidate would have cost the recent traffic in, a
strategy's name and why out. The shell (``sim/auto.py``) replays and carries it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from modelpool.sim.results import RunResult


@dataclass(frozen=True, slots=True)
class CandidateRow:
    """What one candidate strategy would have cost the replayed window."""

    strategy: str
    total_wait: float
    """Seconds requests would have waited for their model, summed."""
    p95_wait: float
    cold_loads: int
    warm_restores: int = 0

    @classmethod
    def of(cls, result: RunResult) -> CandidateRow:
        return cls(
            result.label,
            round(result.total_wait, 6),
            round(result.p95_wait, 6),
            result.cold_loads,
            result.warm_restores,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_strategy(
    current: str, table: Sequence[CandidateRow], hysteresis: float
) -> tuple[str, str]:
    """The strategy to run next and why.

    A candidate replaces ``current`` only when its total wait is lower than current's
    by more than ``hysteresis`` (a share of current's wait): a switch moves the pool's
    behaviour, so a small or noisy gain is not worth it. A tie keeps ``current``; an
    empty table (nothing replayed: an empty window, one model) changes nothing, and so
    does a table without ``current`` in it (nothing to compare against).
    """
    if not table:
        return current, "nothing to compare: no replay (an empty window or a single model)"
    rows = {row.strategy: row for row in table}
    mine = rows.get(current)
    if mine is None:
        return current, f"{current} was not replayed: nothing to compare against"
    best = min(table, key=lambda r: (r.total_wait, r.strategy != current, r.strategy))
    if best.strategy == current:
        return current, f"{current} waits least ({mine.total_wait:.1f} s in total)"
    gain = mine.total_wait - best.total_wait
    share = gain / mine.total_wait  # mine.total_wait > best's >= 0
    compared = (
        f"{best.strategy} would have waited {best.total_wait:.1f} s in total against "
        f"{mine.total_wait:.1f} s for {current} ({share:.0%} less)"
    )
    if gain > hysteresis * mine.total_wait:
        return best.strategy, f"{compared}, beyond the {hysteresis:.0%} hysteresis"
    return current, f"{compared}, within the {hysteresis:.0%} hysteresis: {current} stays"
