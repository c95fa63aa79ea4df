"""Placement by cost under other prices for a victim: which one waits least?

    .venv/bin/python bench/placement_price.py [--seeds 20]

Replays `bench/placement_quality.py`'s workloads (the `box` set, seeds 0..N-1, strategy
`hybrid`) under `placement: cost` with each price below and under `placement:
most_room`, and prints most room / by cost per workload. A price is given to placement
as the policy's own ``reload_cost`` (``core.placement.PricesReloads``), so most room's
spread models take it too, as they do the shipped one:

- `idle 60 s` (shipped): load seconds x ``reuse_chance(idle)``, horizon 60 s;
- `idle 30 s`, `idle 120 s`, `idle 300 s`: the same with another horizon;
- `decayed count` (the price before): load seconds x (1 + the request count decayed
  over 10 minutes);
- `request rate 60 s`: the chance of a request within 60 s from the decayed count's rate.

Prints only; the figures BENCHMARKS.md quotes from it name this command.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from modelpool.config import PoolSettings
from modelpool.core.ports import Candidate, EvictionContext
from modelpool.core.stats import FREQUENCY_HALF_LIFE, decayed
from modelpool.plugins import POLICIES
from modelpool.sim.engine import Simulation
from modelpool.sim.models import box_model_set
from modelpool.types import ModelId
from placement_quality import OTHERS, REQUESTS, STRATEGY, workloads

Price = Callable[[Candidate, float], float]


def by_idle(horizon: float) -> Price:
    def price(c: Candidate, now: float) -> float:
        idle = now - c.last_used
        return c.load_seconds * (1.0 if idle <= 0 else -math.expm1(-horizon / idle))

    return price


def decayed_count(c: Candidate, now: float) -> float:
    return c.load_seconds * (1.0 + decayed(c.frequency, c.frequency_at, now))


def request_rate(c: Candidate, now: float) -> float:
    rate = decayed(c.frequency, c.frequency_at, now) * math.log(2) / FREQUENCY_HALF_LIFE
    return c.load_seconds * -math.expm1(-rate * 60.0)


PRICES: dict[str, Price] = {
    "idle 60 s (shipped)": by_idle(60.0),
    "idle 30 s": by_idle(30.0),
    "idle 120 s": by_idle(120.0),
    "idle 300 s": by_idle(300.0),
    "decayed count (before)": decayed_count,
    "request rate 60 s": request_rate,
}


class Priced:
    """The bench's strategy, with ``reload_cost`` set to one of ``PRICES``."""

    def __init__(self, price: str) -> None:
        self._policy = POLICIES.get(STRATEGY)()
        self._price = PRICES[price]
        self.name = STRATEGY

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        return self._policy.victims(candidates, context)

    def reload_cost(self, candidate: Candidate, now: float) -> float:
        return self._price(candidate, now)


def replay(price: str, rule: str, name: str, seed: int) -> float:
    workload = workloads(seed, REQUESTS)[name]
    result = Simulation(
        workload, box_model_set(), Priced(price), label=rule, warm_budget=0,
        settings=PoolSettings(placement=rule),
    ).run()  # fmt: skip
    return result.total_wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (default 20)")
    args = parser.parse_args()
    names = ["fragmentation", *OTHERS]
    jobs = [(p, r, n, s) for p in PRICES for r in ("cost", "most_room") for n in names
            for s in range(args.seeds)]  # fmt: skip
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        waits = list(pool.map(replay, *zip(*jobs, strict=True), chunksize=4))
    total: dict[tuple[str, str, str], float] = {}
    for (p, r, n, _), wait in zip(jobs, waits, strict=True):
        total[p, r, n] = total.get((p, r, n), 0.0) + wait
    print(f"most room / by cost, total load wait over seeds 0-{args.seeds - 1}, {STRATEGY}:\n")
    print("| price | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for p in PRICES:
        cells = [f"{total[p, 'most_room', n] / max(total[p, 'cost', n], 1e-9):.3f}×" for n in names]
        print(f"| {p} | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
