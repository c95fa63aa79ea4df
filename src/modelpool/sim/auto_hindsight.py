"""Does the window ``strategy: auto`` replays say which strategy waits least next?

``auto`` follows the leader: at each evaluation it runs the strategy whose replay of the
recent window waited least. That pays only if the ranking of the past carries over to
the next interval. The replayed ``auto`` (``sim/auto_replay.py``) records each
evaluation's table, so this can be checked without any further replay: while the
window still reaches back to the first request, the table of one evaluation minus the
table of the one before is what each strategy would have waited on the requests that
came in between (the same requests before them, the same start), and the table before
that is the ranking ``auto`` had when it chose.

Pure: tables in, figures out (``bench/auto_quality.py`` prints them).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelpool.sim.auto_choice import CandidateRow

TIE = 0.01
"""Waits all within this share of the largest tell the strategies apart no more than a
tie does (every wanted model fitting: each strategy waits the same cold loads)."""


@dataclass(frozen=True, slots=True)
class Foresight:
    """How well the past window ranked the strategies for the next interval."""

    compared: int
    """Intervals where both the past window and the interval told strategies apart."""
    hits: int
    """...of which the past window's best was the interval's best."""
    rank_correlation: float
    """Spearman's rho of the two rankings, averaged over the intervals compared (0: the
    past says nothing of the next interval, 1: the same order)."""
    strategies: int
    """How many were ranked: a blind pick is the interval's best 1 in this many times."""
    regret: float = 0.0
    """What following the forecast's best waited beyond each interval's best, as a share
    of what the intervals' best waited (0: it always picked the best)."""

    @property
    def hit_rate(self) -> float:
        return self.hits / self.compared if self.compared else 0.0


def waits_between(
    before: Sequence[CandidateRow], after: Sequence[CandidateRow]
) -> dict[str, float]:
    """Each strategy's wait on the requests a later replay of the same start adds: its
    total in ``after`` less its total in ``before`` (strategies in both)."""
    earlier = {row.strategy: row.total_wait for row in before}
    return {
        row.strategy: row.total_wait - earlier[row.strategy]
        for row in after
        if row.strategy in earlier
    }


def foresight(tables: Sequence[Sequence[CandidateRow]]) -> Foresight:
    """``tables``: the replays of consecutive evaluations whose windows all start at the
    same request (each one a prefix of the next). For each evaluation but the last: its
    table's ranking (what ``auto`` chose by) against the ranking of what each strategy
    waited on the requests that came before the next evaluation."""
    pairs = [
        ({row.strategy: row.total_wait for row in now}, waits_between(now, following))
        for now, following in itertools.pairwise(tables)
    ]
    return foresight_of_pairs(pairs)


def foresight_of_pairs(
    pairs: Sequence[tuple[Mapping[str, float], Mapping[str, float]]],
) -> Foresight:
    """Each pair: (what a forecast said each strategy would wait, what each waited in
    fact) for one interval; how often the forecast's best was the fact's best, and the
    mean rank correlation, over the intervals where both tell strategies apart."""
    compared = hits = 0
    rhos: list[float] = []
    strategies = 0
    extra = least = 0.0
    for past, ahead in pairs:
        names = sorted(set(past) & set(ahead))
        if len(names) < 2 or not (_apart(past, names) and _apart(ahead, names)):
            continue
        strategies = max(strategies, len(names))
        compared += 1
        past_rank, ahead_rank = _ranks(past, names), _ranks(ahead, names)
        hits += past_rank.index(0) == ahead_rank.index(0)
        best = ahead[names[ahead_rank.index(0)]]
        extra += ahead[names[past_rank.index(0)]] - best
        least += best
        n = len(names)
        squares = sum((a - b) ** 2 for a, b in zip(past_rank, ahead_rank, strict=True))
        rhos.append(1 - 6 * squares / (n * (n * n - 1)))
    mean = sum(rhos) / len(rhos) if rhos else 0.0
    return Foresight(compared, hits, mean, strategies, extra / least if least else 0.0)


def _apart(waits: Mapping[str, float], names: Sequence[str]) -> bool:
    values = [waits[name] for name in names]
    return max(values) - min(values) > TIE * max(values)


def _ranks(waits: Mapping[str, float], names: Sequence[str]) -> list[int]:
    """Each name's place (0: least wait; ties by name), in ``names``' order."""
    order = sorted(names, key=lambda name: (waits[name], name))
    return [order.index(name) for name in names]
