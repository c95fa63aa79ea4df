"""Replaying forward from the state the pool is in: does that say which strategy waits
least next?

``strategy: auto`` replays the last hour from an empty pool, once per candidate, and
follows the leader; that leader is the next interval's best little more often than a
blind pick (``sim/auto_hindsight.py``). Which strategy wins an interval depends on what
is resident when contention starts, so this asks another question: from the state the
pool is in now (what is resident and warm, each model's stats, the work in flight), which
strategy would wait least on a forecast of the next interval? The state is a fork of the
running simulation (``Simulation.fork``): the most a live pool's snapshot could tell.

Forecasts, from the window of recent arrivals:

- ``repeat_last``: the last ``span`` seconds again, shifted to start now;
- ``resample``: each model's requests at the window's rate (Poisson), each holding its
  lease for a time drawn from that model's in the window.

``bench/auto_forward.py`` measures them against the fact (the same fork played on with
the real next interval's requests): on the provided workloads none predicts it better
than staying with ``hybrid`` (BENCHMARKS.md), so ``auto`` does not use them.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from modelpool.core.traffic_window import Arrival
from modelpool.plugins import POLICIES
from modelpool.sim.auto_choice import CandidateRow
from modelpool.sim.engine import Simulation
from modelpool.sim.workload import Request


def forward_table(
    simulation: Simulation, requests: Sequence[Request], candidates: Sequence[str]
) -> list[CandidateRow]:
    """Each candidate's cost on ``requests`` played on from ``simulation``'s state as it
    stands (a fork per candidate; ``simulation`` itself is not touched), best first."""
    rows = []
    for name in candidates:
        result = simulation.fork().continue_with(requests, POLICIES.get(name)())
        rows.append(CandidateRow.of(result))
    return sorted(rows, key=lambda r: (r.total_wait, r.strategy))


def repeat_last(arrivals: Sequence[Arrival], now: float, span: float) -> list[Request]:
    """The arrivals of the last ``span`` seconds before ``now``, shifted so that the
    span (or, when ``arrivals`` began less than ``span`` ago, their first) starts at
    ``now``."""
    kept = [a for a in arrivals if now - span <= a.at < now]
    if not kept:
        return []
    shift = min(span, now - min(a.at for a in arrivals))
    return sorted((Request(a.at + shift, a.model_id, service=a.held) for a in kept), key=_time)


def resample(
    arrivals: Sequence[Arrival], now: float, span: float, rng: random.Random
) -> list[Request]:
    """``span`` seconds from ``now`` of Poisson arrivals per model at the rate it had in
    ``arrivals`` (over the time they cover, up to ``now``), each holding its lease for
    one of that model's recorded times, drawn at random."""
    if not arrivals:
        return []
    covered = max(now - min(a.at for a in arrivals), 1.0)
    held: dict[str, list[float]] = defaultdict(list)
    for arrival in arrivals:
        held[arrival.model_id].append(arrival.held)
    requests = []
    for model_id, times in sorted(held.items()):
        rate = len(times) / covered
        at = now + rng.expovariate(rate)
        while at < now + span:
            requests.append(Request(at, model_id, service=rng.choice(times)))
            at += rng.expovariate(rate)
    return sorted(requests, key=_time)


def _time(request: Request) -> float:
    return request.time
