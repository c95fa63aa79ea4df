"""Core overhead: the cost of a hit and of one eviction decision, measured in one run.

    .venv/bin/python bench/core_overhead.py [--quick] [--out FOLDER]

Prints two tables and writes ``bench/results/core_overhead.{json,md}`` (``--out``: in
that folder instead, also after ``--quick``; ``--quick`` alone writes nothing), with
the headline figures as ``"ratios"`` for ``bench/run_all.py``:

* ``use()`` on a resident model: median µs of ``async with pool.use(id)`` (acquire and
  release of a lease, through the scheduler), target < 50 µs;
* one eviction decision per strategy with 10 … 10,000 idle candidates: ``policy`` is
  ``victims()`` alone, ``plan`` is the whole decision the scheduler takes (building the
  candidates from its records and planning the load), target < 1 ms at 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from machine import describe_machine
from modelpool import FakeBackend, ModelPool, ModelSpec
from modelpool.config import PoolSettings
from modelpool.core.planner import plan_load
from modelpool.core.ports import Candidate, EvictionContext, EvictionPolicy, Handle
from modelpool.core.scheduler import Scheduler
from modelpool.core.states import ModelState
from modelpool.core.testing import ManualClock, RecordingEffects
from modelpool.plugins import POLICIES
from run_all import ratio

RESULTS = Path(__file__).parent / "results"
SIZES = (10, 100, 1_000, 10_000)
HIT_TARGET_US = 50.0
DECISION_TARGET_US = 1_000.0


def median_us(run: Callable[[], object], repeats: int, inner: int) -> float:
    """Median over ``repeats`` of the mean time of ``inner`` calls, in microseconds."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            run()
        samples.append((time.perf_counter() - start) / inner * 1e6)
    return statistics.median(samples)


async def hit_cost(repeats: int, inner: int) -> float:
    pool = ModelPool(
        [ModelSpec(id="a", backend="fake", memory="1GB", device="cpu")],
        budgets={"cpu": "2GB"},
        backends={"fake": FakeBackend()},
    )
    async with pool:
        await pool.load("a")
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(inner):
                async with pool.use("a"):
                    pass
            samples.append((time.perf_counter() - start) / inner * 1e6)
    return statistics.median(samples)


def loaded_scheduler(n: int, rng: random.Random) -> tuple[Scheduler, ManualClock, int]:
    """A scheduler with ``n`` idle resident models of varied stats, on a full device."""
    sizes = [rng.randint(100, 10_000) * 10**6 for _ in range(n)]
    specs = [
        ModelSpec(
            id=f"m{i}",
            backend="fake",
            memory=size,
            device="gpu:0",
            priority=rng.randint(1, 10),
            tags=(rng.choice(["chat", "code", "general"]),),
        )
        for i, size in enumerate(sizes)
    ]
    incoming = ModelSpec(id="incoming", backend="fake", memory=sum(sizes) // 10, device="gpu:0")
    clock = ManualClock(0.0)
    scheduler = Scheduler(
        [*specs, incoming],
        {s.id: s.memory or 0 for s in [*specs, incoming]},
        POLICIES.get("lru")(),
        RecordingEffects(),
        clock,
        PoolSettings(budgets={"gpu:0": sum(sizes)}),
    )
    for spec in specs:
        clock.now = rng.uniform(0, 1000)
        scheduler.load(spec.id)
        scheduler.on_load_done(spec.id, Handle(spec.id, "gpu:0"), None, rng.uniform(0.1, 30))
        for _ in range(rng.randint(0, 20)):
            scheduler.release(scheduler.request(spec.id), ok=rng.random() > 0.05)  # type: ignore[arg-type]
    clock.now = 1000.0
    return scheduler, clock, incoming.memory or 0


def policy_decision(
    policy: EvictionPolicy, candidates: list[Candidate], context: EvictionContext
) -> object:
    return policy.victims(candidates, context)


def whole_decision(
    scheduler: Scheduler, policy: EvictionPolicy, demand: dict[str, float]
) -> object:
    """What the scheduler does to plan a load: build candidates from records, then plan."""
    now = 1000.0
    target = scheduler.resolve("incoming")
    residents = scheduler.residents("gpu:0")
    return plan_load(
        target,
        scheduler.ledger.account("gpu:0"),
        residents,
        policy,
        now,
        demand,
    )


def decision_costs(quick: bool) -> list[dict[str, Any]]:
    """Per strategy and fleet size, the median of many samples taken in rounds that
    visit every strategy in turn, so a burst of noise on a shared machine lands on all
    strategies alike instead of on whichever happened to be measured then."""
    rows = []
    rng = random.Random(7)
    names = POLICIES.names()
    for n in SIZES:
        scheduler, _, need = loaded_scheduler(n, rng)
        demand = scheduler.demand()
        candidates = [r.candidate() for r in scheduler.records() if r.state is ModelState.READY]
        context = EvictionContext(need=need, now=1000.0, demand=demand)
        inner = 1 if quick else max(1, 2_000 // n)
        rounds = 3 if quick else 31
        policies = {name: POLICIES.get(name)() for name in names}
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for name, policy in policies.items():
                runs = {
                    "policy_us": partial(policy_decision, policy, candidates, context),
                    "plan_us": partial(whole_decision, scheduler, policy, demand),
                }
                for column, run in runs.items():
                    samples.setdefault((name, column), []).append(median_us(run, 1, inner))
        for name in names:
            rows.append({
                "strategy": name,
                "candidates": n,
                "policy_us": round(statistics.median(samples[name, "policy_us"]), 1),
                "plan_us": round(statistics.median(samples[name, "plan_us"]), 1),
            })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--out", type=Path, help="write the results in this folder")
    args = parser.parse_args()
    hit = asyncio.run(hit_cost(repeats=5 if args.quick else 21, inner=2_000))
    rows = decision_costs(args.quick)
    machine = describe_machine()

    lines = [
        "# Core overhead",
        "",
        "Command: `.venv/bin/python bench/core_overhead.py`  ",
        f"Machine: {machine}; one run.",
        "",
        f"`use()` on a resident model: **{hit:.1f} µs** median "
        f"(target < {HIT_TARGET_US:.0f} µs: {hit / HIT_TARGET_US:.2f}× of target)",
        "",
        "One eviction decision, median µs (policy = `victims()` alone; plan = the "
        "scheduler's whole decision incl. building candidates):",
        "",
        "| strategy | " + " | ".join(f"{n:,} policy / plan" for n in SIZES) + " |",
        "|---|" + "---|" * len(SIZES),
    ]
    for name in POLICIES.names():
        cells = [
            f"{r['policy_us']:,.1f} / {r['plan_us']:,.1f}" for r in rows if r["strategy"] == name
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    at_1000 = [r for r in rows if r["candidates"] == 1_000]
    worst_policy = max(at_1000, key=lambda r: r["policy_us"])
    worst_plan = max(at_1000, key=lambda r: r["plan_us"])
    worst_policy_us, worst = worst_policy["policy_us"], worst_plan["plan_us"]
    lines += [
        "",
        f"Worst `victims()` at 1,000 candidates: {worst_policy_us:,.1f} µs "
        f"({worst_policy_us / DECISION_TARGET_US:.2f}× of the 1 ms target); worst whole "
        f"decision: {worst:,.1f} µs ({worst / DECISION_TARGET_US:.2f}×).",
    ]
    report = "\n".join(lines)
    print(report)
    ms = DECISION_TARGET_US / 1_000
    victims = f"victims() at 1,000 candidates (worst: {worst_policy['strategy']})"
    decision = f"whole decision at 1,000 candidates (worst: {worst_plan['strategy']})"
    ratios = [
        ratio("use() on a resident model", round(hit, 2), "µs", "lower", HIT_TARGET_US),
        ratio(victims, round(worst_policy_us / 1_000, 3), "ms", "lower", ms),
        ratio(decision, round(worst / 1_000, 3), "ms", "lower", ms),
    ]
    folder: Path | None = args.out or (None if args.quick else RESULTS)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "core_overhead.md").write_text(report + "\n")
        (folder / "core_overhead.json").write_text(
            json.dumps(
                {
                    "machine": machine,
                    "python": sys.version,
                    "use_hit_us": round(hit, 2),
                    "decisions": rows,
                    "ratios": ratios,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
