"""Placement quality: by cost, most room and first fit on a box of four 24 GB GPUs.

    .venv/bin/python bench/placement_quality.py [--quick] [--seeds N] [--out FOLDER]

Replays each workload through the pool's own scheduler on a virtual clock, once per
`pool.placement` rule, over the `box` model set (16 models of 1.2-40 GB, the three
above 24 GB spread over two GPUs): `fragmentation` (small models always busy, three
large ones in turns: where the small ones sit decides whether a large one finds a
hole), then the simulator's zipf, bursty, phases, diurnal and azure traffic scaled to
the box. Each workload is drawn with seeds 0..N-1 (40 by default: these replays keep the
box saturated, and one seed's ratio moves by 10-30% with any change of rule, so five
seeds could put a rule 20% ahead that forty put level) and the total load wait summed
over them, the three rules replaying the same requests, so one run gives the ratios;
with each ratio, how many seeds by cost won, and the 90% interval of the ratio when the
seeds are resampled (bootstrap).

Then times one placement decision on a box of 8 devices and 1,000 models (125
resident on each device): a model that fits somewhere, and one that must evict.

Then the hot workload (one model 60% of the traffic, four slots a copy) on two GPUs
with one copy of it and with `replicas: {max: 2}`, at two rates: its p95 latency.

The goals: by cost at least 1.3x less total load wait than most room on
`fragmentation`, never more on the others; a decision under 2 ms; two copies at least
2x lower p95 latency for the hot model. Writes
`bench/results/placement_quality.{json,md}` (not with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from machine import cpu_name
from modelpool.config import ModelSpec, PoolSettings
from modelpool.config.placement import ReplicaSettings
from modelpool.core.ports import Handle
from modelpool.core.scheduler import Scheduler
from modelpool.core.stats import percentile
from modelpool.core.testing import ManualClock, RecordingEffects
from modelpool.plugins import POLICIES
from modelpool.sim.engine import Simulation
from modelpool.sim.files import write_text
from modelpool.sim.models import ModelSet, box_model_set, demo_model_set
from modelpool.sim.workload import Workload
from modelpool.sim.workloads import fragmentation, hot, make_workload
from run_all import MARKS, ratio

RESULTS = Path(__file__).parent / "results"
RULES = ("cost", "most_room", "first_fit")
STRATEGY = "hybrid"
REQUESTS = 1800
"""One request every two seconds for an hour: a busy box, not a box drowning in loads
(at one a second every rule spends most of the hour queueing behind loads)."""
QUICK_REQUESTS = 600
OTHERS = ("zipf", "bursty", "phases", "diurnal", "azure")
FRAGMENTATION_TARGET = 1.3
DECISION_TARGET_MS = 2.0
GB = 10**9


def workloads(seed: int, requests: int) -> dict[str, Workload]:
    box = box_model_set()
    made = {"fragmentation": fragmentation(box, seed=seed, requests=requests)}
    made.update({name: make_workload(name, box, seed=seed, requests=requests) for name in OTHERS})
    return made


def replay_one(seed: int, requests: int, name: str, rule: str) -> dict[str, float]:
    """One workload's draw replayed under one rule."""
    box = box_model_set()
    workload = workloads(seed, requests)[name]
    result = Simulation(
        workload, box, POLICIES.get(STRATEGY)(), label=rule, warm_budget=0,
        settings=PoolSettings(placement=rule),
    ).run()  # fmt: skip
    return {"total_wait": result.total_wait, "cold_loads": result.cold_loads,
            "p95_wait": result.p95_wait}  # fmt: skip


def replay(seeds: int, requests: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Per workload and rule: total wait and cold loads summed over the seeds, the worst
    p95 wait, and each seed's total wait (``per_seed``). Runs on every core."""
    names = ["fragmentation", *OTHERS]
    jobs = [(seed, requests, name, rule) for seed in range(seeds) for name in names
            for rule in RULES]  # fmt: skip
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(replay_one, *zip(*jobs, strict=True), chunksize=4))
    totals: dict[str, dict[str, dict[str, Any]]] = {}
    for (_, _, name, rule), result in zip(jobs, results, strict=True):
        cell = totals.setdefault(name, {}).setdefault(
            rule, {"total_wait": 0.0, "cold_loads": 0.0, "p95_wait": 0.0, "per_seed": []}
        )
        cell["total_wait"] += result["total_wait"]
        cell["cold_loads"] += result["cold_loads"]
        cell["p95_wait"] = max(cell["p95_wait"], result["p95_wait"])
        cell["per_seed"].append(result["total_wait"])
    return totals


def interval(cost: list[float], room: list[float], draws: int = 2000) -> tuple[float, float]:
    """The 5th and 95th percentiles of most room / by cost over the seeds resampled with
    replacement (both rules keep their pairing: a seed is drawn for both)."""
    rng = random.Random(0)
    n = len(cost)
    ratios = []
    for _ in range(draws):
        picks = [rng.randrange(n) for _ in range(n)]
        ratios.append(sum(room[i] for i in picks) / max(sum(cost[i] for i in picks), 1e-9))
    ratios.sort()
    return ratios[int(0.05 * draws)], ratios[int(0.95 * draws) - 1]


HOT_MODEL = "llama-3.1-8b"
HOT_SLOTS = 4
"""Requests one copy of the hot model serves at once (a llama.cpp server's slots)."""
HOT_REQUESTS = {"moderate": 2400, "hot": 2800}
"""Requests over half an hour: 0.8 and 0.93 a second for the hot model, whose requests
take 4.2 s on average: one copy of four slots is busy 83% and 97% of the time."""
TARGET_RATE = "hot"
"""The rate the 2x target is checked at: the hot workload's. At the moderate rate a
second copy can only take away the queueing, and one copy's p95 is already less than
twice the requests' own p95 (printed as the most any number of copies could give)."""
REPLICA_SEEDS = 5
"""The replica runs are longer and vary less from seed to seed than the placement ones."""
REPLICA_TARGET = 2.0


def replica_runs(seeds: int, requests: int) -> dict[str, dict[str, float]]:
    """The hot workload (one model 60% of the traffic) with one copy of it and with
    ``replicas: {max: 2}``, the same two 24 GB GPUs (the `demo` set's eight models fit
    with room for a second copy): p95 waits, the mean over seeds, and the total."""
    demo = demo_model_set()
    budgets = {"cuda:0": 24 * GB, "cuda:1": 24 * GB}
    runs: dict[str, dict[str, float]] = {}
    for label, replicas in (("one copy", None), ("max: 2", ReplicaSettings(max=2))):
        models = ModelSet(
            demo.name,
            tuple(
                replace(m, device="auto", max_concurrent=HOT_SLOTS, replicas=replicas)
                if m.id == HOT_MODEL
                else replace(m, device="auto")
                for m in demo.models
            ),
            budgets,
            0,
        )
        cell = runs.setdefault(label, {"hot_p95_latency": 0.0, "hot_p50_latency": 0.0,
                                       "hot_p95_service": 0.0, "p95_wait": 0.0,
                                       "total_wait": 0.0})  # fmt: skip
        hot_model = models[HOT_MODEL]
        for seed in range(seeds):
            workload = hot(models, seed=seed, requests=requests, duration=1800.0, model=HOT_MODEL)
            services = sorted(
                r.service
                if r.service is not None
                else hot_model.service_seconds(r.prompt_tokens, r.output_tokens)
                for r in workload.requests
                if r.model == HOT_MODEL
            )
            cell["hot_p95_service"] += percentile(services, 95) / seeds
            simulation = Simulation(workload, models, POLICIES.get(STRATEGY)(), warm_budget=0)
            result = simulation.run()
            latencies = sorted(simulation.latencies_by_model[HOT_MODEL])
            cell["hot_p95_latency"] += percentile(latencies, 95) / seeds
            cell["hot_p50_latency"] += percentile(latencies, 50) / seeds
            cell["p95_wait"] += result.p95_wait / seeds
            cell["total_wait"] += result.total_wait
    return runs


def decision_ms(devices: int = 8, models: int = 1000, calls: int = 200) -> dict[str, float]:
    """Median milliseconds of one placement on a full box: room somewhere, then none."""
    rng = random.Random(0)
    sizes = [rng.randint(1, 9) * GB // 2 for _ in range(models)]
    # Each device just holds its models, with 1 GB to spare (3 GB on the last): a 2 GB
    # model has room on one device, a 20 GB one must evict wherever it goes.
    budgets = {f"cuda:{i}": sum(sizes[i::devices]) + GB for i in range(devices)}
    budgets[f"cuda:{devices - 1}"] += 2 * GB
    specs = [
        ModelSpec(id=f"m{i}", backend="fake", memory=size, device=f"cuda:{i % devices}")
        for i, size in enumerate(sizes)
    ]
    specs.append(ModelSpec(id="new", backend="fake", memory=2 * GB))
    specs.append(ModelSpec(id="big", backend="fake", memory=20 * GB))
    clock = ManualClock()
    effects = RecordingEffects()
    estimates = {s.id: s.memory or GB for s in specs}
    scheduler = Scheduler(
        specs, estimates, POLICIES.get(STRATEGY)(), effects, clock, PoolSettings(budgets=budgets)
    )
    for spec in specs[:-2]:  # as many as fit, each used once
        record = scheduler.resolve(spec.id)
        assert record.device is None
        scheduler.load(spec.id)
        scheduler.on_load_done(spec.id, Handle(spec.id, spec.device), None, 1.0)
        clock.advance(0.01)
    figures = {}
    for label, model in (("room somewhere", "new"), ("must evict", "big")):
        record = scheduler.resolve(model)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            scheduler.plan(record, clock())
            times.append((time.perf_counter() - started) * 1000)
        figures[label] = statistics.median(times)
    figures["resident"] = sum(len(scheduler.residents(d)) for d in budgets)
    return figures


def table(totals: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| workload | by cost | most room | first fit | most room / by cost | 90% interval "
        "| seeds by cost waited less |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rules in totals.items():
        cells = [
            f"{rules[r]['total_wait']:,.0f} s ({rules[r]['cold_loads']:.0f} loads)" for r in RULES
        ]
        share = rules["most_room"]["total_wait"] / max(rules["cost"]["total_wait"], 1e-9)
        cost, room = rules["cost"]["per_seed"], rules["most_room"]["per_seed"]
        low, high = interval(cost, room)
        won = sum(c < r for c, r in zip(cost, room, strict=True))
        lines.append(
            f"| {name} | " + " | ".join(cells)
            + f" | {share:.2f}× | {low:.2f}-{high:.2f}× | {won} of {len(cost)} |"
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def replica_table(replicas: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| rate | copies | hot p50 latency | hot p95 latency | hot p95 service alone "
        "| all p95 wait | total wait |",
        "|---|---|---|---|---|---|---|",
    ]
    for rate, runs in replicas.items():
        for label, cell in runs.items():
            lines.append(
                f"| {rate} | {label} | {cell['hot_p50_latency']:.1f} s | "
                f"{cell['hot_p95_latency']:.1f} s | {cell['hot_p95_service']:.1f} s | "
                f"{cell['p95_wait']:.1f} s | "
                f"{cell['total_wait']:,.0f} s |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS} requests, 2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 40)")
    parser.add_argument("--out", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    seeds = args.seeds or (2 if args.quick else 40)
    requests = QUICK_REQUESTS if args.quick else REQUESTS
    started = time.perf_counter()
    totals = replay(seeds, requests)
    decision = decision_ms()
    replica_seeds = min(seeds, REPLICA_SEEDS)
    replicas = {rate: replica_runs(replica_seeds, n) for rate, n in HOT_REQUESTS.items()}
    figures: list[dict[str, Any]] = []
    for name, rules in totals.items():
        share = rules["most_room"]["total_wait"] / max(rules["cost"]["total_wait"], 1e-9)
        limit = FRAGMENTATION_TARGET if name == "fragmentation" else 1.0
        figures.append(ratio(f"{name}: load wait, most room / by cost", share, limit=limit))
    for rate, runs in replicas.items():
        one = runs["one copy"]["hot_p95_latency"]
        share = one / max(runs["max: 2"]["hot_p95_latency"], 1e-9)
        figures.append(
            ratio(f"hot model ({rate} rate): p95 latency, one copy / replicas max 2", share,
                  limit=REPLICA_TARGET if rate == TARGET_RATE else None)
        )  # fmt: skip
        most = one / max(runs["one copy"]["hot_p95_service"], 1e-9)
        figures.append(
            ratio(f"hot model ({rate} rate): the most copies could give, one copy's p95 / "
                  "the requests' own p95", most)
        )  # fmt: skip
    for label in ("room somewhere", "must evict"):
        figures.append(
            ratio(f"placement decision, 8 devices x 1,000 models, {label}", decision[label],
                  unit="ms", better="lower", limit=DECISION_TARGET_MS)
        )  # fmt: skip
    seconds = time.perf_counter() - started
    command = "bench/placement_quality.py" + (" --quick" if args.quick else "")
    head = (
        f"Command: `.venv/bin/python {command}` ({seeds} seeds, {requests} requests each); "
        f"machine: {cpu_name()}, Python {platform.python_version()}; {seconds:.0f} s.\n"
    )
    md = (
        f"# Placement quality\n\n{head}\nTotal load wait over the seeds, strategy "
        f"{STRATEGY}, box of four 24 GB GPUs (`box` model set):\n\n{table(totals)}\n"
        f"Replicas: the `hot` workload ({HOT_MODEL} takes 60%, {HOT_SLOTS} slots per copy) "
        f"on the `demo` set over two 24 GB GPUs, one copy against `replicas: {{max: 2}}`, "
        f"mean over seeds 0-{replica_seeds - 1}:\n\n{replica_table(replicas)}\n"
        f"One decision on 8 devices x 1,000 models ({decision['resident']:.0f} resident), "
        f"median of 200: {decision['room somewhere']:.3f} ms when a device has room, "
        f"{decision['must evict']:.3f} ms when it must evict.\n\n"
        + "\n".join(
            f"- {f['name']}: {f['value']:.2f}{' ' if f['unit'] == 'ms' else ''}{f['unit']} "
            + (f"(target {f['target']}) {MARKS[f['ok']]}" if f["target"] else "")
            for f in figures
        )
        + "\n"
    )
    print(md)
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else RESULTS)
    data = {"command": command, "seeds": seeds, "requests": requests, "totals": totals,
            "replicas": replicas, "decision_ms": decision, "ratios": figures}  # fmt: skip
    write_text(out / "placement_quality.json", json.dumps(data, indent=2) + "\n")
    write_text(out / "placement_quality.md", md)
    print(f"wrote {out / 'placement_quality.md'}")


if __name__ == "__main__":
    main()
