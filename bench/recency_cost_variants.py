"""`recency_cost` and the variants it was chosen from, against the other strategies.

    .venv/bin/python bench/recency_cost_variants.py [--seeds 10]

On the draws of `bench/auto_quality.py` (the `demo` set, 16 GB GPU, 24 GB warm tier,
3,600 requests an hour; five workloads), seeds 0..N-1 and then N..2N-1 held out, each
variant's total wait over the best of the other registered strategies (all but
`recency_cost`) on each draw: worst and mean per seed set. The variants:

- `shipped`: ``RecencyCostPolicy`` (reuse chance x load seconds / bytes; busy models
  least recently used first);
- `busy by value`: busy models ranked by the same value;
- `no bytes`: reuse chance x load seconds;
- `decayed count, busy last`: ``cost_aware``'s value (decayed count x load seconds /
  bytes) with busy models least recently used first;
- `lru, busy last`;
- `horizon H s`: the shipped value with another horizon for the reuse chance.

Prints only; the figures BENCHMARKS.md quotes from it name this command.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from auto_quality import WORKLOADS, draw_of
from modelpool.core.ports import Candidate, EvictionContext, EvictionPolicy
from modelpool.core.stats import decayed
from modelpool.plugins import POLICIES
from modelpool.policies import RecencyCostPolicy, evict_in_order
from modelpool.sim.engine import Simulation
from modelpool.sim.models import demo_model_set, parse_budgets
from modelpool.types import ModelId

NAMES = ("phases+bursty+zipf", *WORKLOADS)
VARIANTS = ("shipped", "busy by value", "no bytes", "decayed count, busy last",
            "lru, busy last", "horizon 15 s", "horizon 30 s", "horizon 120 s",
            "horizon 900 s")  # fmt: skip


class Variant:
    """One rule of ``VARIANTS`` other than `shipped` (for the bench only)."""

    name = "variant"

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.horizon = float(rule.split()[1]) if rule.startswith("horizon") else 60.0

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[ModelId]:
        now, rule = context.now, self.rule
        busy = [c.current_tasks > 0 for c in candidates]
        values = []
        for c, is_busy in zip(candidates, busy, strict=True):
            idle = now - c.last_used
            chance = 1.0 if idle <= 0 else -math.expm1(-self.horizon / idle)
            seconds, size = max(c.load_seconds, 0.001), max(c.bytes, 1)
            if rule == "no bytes":
                value = chance * seconds
            elif rule == "decayed count, busy last":
                value = decayed(c.frequency, c.frequency_at, now) * seconds / size
            elif rule == "lru, busy last":
                value = c.last_used
            else:
                value = chance * seconds / size
            values.append(0.0 if is_busy and rule != "busy by value" else value)
        if rule == "busy by value":
            busy = [False] * len(candidates)
        last_used = [c.last_used for c in candidates]
        return evict_in_order(candidates, context.need, busy, values, last_used)


def policy(name: str) -> EvictionPolicy:
    if name == "shipped":
        return RecencyCostPolicy()
    if name in VARIANTS:
        return Variant(name)
    return POLICIES.get(name)()


def wait(name: str, workload: str, seed: int) -> float:
    models = demo_model_set()
    draw = draw_of(workload, models, seed, 3600)
    budgets = parse_budgets(["16GB"], models)
    return Simulation(draw, models, policy(name), budgets=budgets).run().total_wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="N: seeds 0..N-1, then N..2N-1")
    args = parser.parse_args()
    others = [n for n in POLICIES.names() if n != "recency_cost"]
    draws = [(w, s) for w in NAMES for s in range(2 * args.seeds)]
    jobs = [(n, w, s) for n in (*others, *VARIANTS) for w, s in draws]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        waits = dict(zip(jobs, pool.map(wait, *zip(*jobs, strict=True), chunksize=4), strict=True))
    best = {d: min(waits[(n, *d)] for n in others) for d in draws}
    print("Total wait over the best of the other strategies on each draw, worst (mean):\n")
    held = f"seeds {args.seeds}-{2 * args.seeds - 1} (held out)"
    print(f"| variant | seeds 0-{args.seeds - 1} | {held} |")
    print("|---|---|---|")
    for name in VARIANTS:
        cells = []
        for low in (0, args.seeds):
            ratios = [waits[(name, w, s)] / best[w, s] for w, s in draws
                      if low <= s < low + args.seeds]  # fmt: skip
            cells.append(f"{max(ratios):.3f}× ({sum(ratios) / len(ratios):.3f}×)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
