"""Cluster routing: our router vs Ray Serve's default vs random, 100 nodes x 8 GPUs.

    .venv/bin/python bench/cluster_router.py [--quick] [--out FOLDER]

Replays an hour of traffic on a simulated cluster (`sim/cluster.py`): 100 nodes of
eight 24 GB GPUs, 1,000 models drawn from the `box` set's sixteen kinds (1.2-40 GB),
each node running the pool's own scheduler behind our router, or Ray Serve's
multiplexing (a count-capped LRU, one load at a time) behind Ray's default router, or
our pool behind a random draw. Ray's cap is set two ways: by the mean model size
(`ray_default`) and by the largest (`ray_default_safe`). Two workloads: Zipf
popularity with drift (100,000 requests) and the Azure conversation trace laid five
times over its hour (96,830 requests). Every setup replays the same requests, so one
run gives the ratios.

A third workload, `hot`, shows a hot model spreading over nodes: every LLM serves 4
requests at once (llama.cpp's `--parallel 4` slots, the rest wait), Zipf traffic as
above with two LLMs taking 20% of it on top, more than one node's copy serves. Ours
against ours with spreading off (`modelpool_nospread`: a model stays where it is
READY however busy); "p95 hot" is the p95 wait of the two hot models' requests.

Targets (issue 18): ours at least 2x less total load wait and 2x fewer cold loads
than Ray's default on both workloads; one hour replayed in under 2 minutes on 2
cores. "floor" is the models the workload asks for: a cold load each is the fewest
any router can do. Writes `bench/results/cluster_router.{json,md}` (not with
--quick, a size given or a setup left out).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import cpu_name
from modelpool.sim.cluster import (
    NO_SPREAD,
    ClusterSimulation,
    ray_models_per_node,
    ray_safe_models_per_node,
    setups,
)
from modelpool.sim.cluster_set import cluster_azure, cluster_hot, cluster_model_set, cluster_zipf
from modelpool.sim.files import write_text
from modelpool.sim.results import RunResult
from modelpool.sim.workload import Workload
from run_all import ratio

RESULTS = Path(__file__).parent / "results"
FULL = {"nodes": 100, "models": 1000, "zipf_requests": 100_000, "azure_copies": 5}
QUICK = {"nodes": 20, "models": 200, "zipf_requests": 10_000, "azure_copies": 1}
ORDER = ("modelpool", "ray_default", "ray_default_safe", "random")
ROWS = (*ORDER, NO_SPREAD.name)
HOT_SLOTS = 4
"""Requests each LLM serves at once in the ``hot`` workload."""
RAYS = ("ray_default", "ray_default_safe")
WAIT_TARGET = 2.0
LOADS_TARGET = 2.0
HOUR_TARGET_S = 120.0


def replay(
    size: dict[str, int], order: tuple[str, ...] = ORDER
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, Any]]:
    models = cluster_model_set(size["models"])
    cap, safe = ray_models_per_node(models), ray_safe_models_per_node(models)
    workloads: dict[str, Workload] = {
        "zipf": cluster_zipf(models, requests=size["zipf_requests"]),
        "azure": cluster_azure(models, copies=size["azure_copies"]),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, workload in workloads.items():
        results[name] = {}
        for label in order:
            simulation = ClusterSimulation(workload, models, setups(cap, safe)[label],
                                           nodes=size["nodes"])  # fmt: skip
            run = simulation.run()
            results[name][label] = figures_of(run, simulation)
            print(
                f"{name:6} {label:12} wait {run.total_wait:12,.0f} s  "
                f"cold loads {run.cold_loads:7,}  wall {run.wall_seconds:6.1f} s",
                flush=True,
            )
        results[name]["floor"] = {"cold_loads": len(workload.models())}
    slotted = cluster_model_set(size["models"], max_concurrent=HOT_SLOTS)
    hot = cluster_hot(slotted, requests=size["zipf_requests"])
    results["hot"] = {}
    for setup in (setups(cap)["modelpool"], NO_SPREAD):
        simulation = ClusterSimulation(hot, slotted, setup, nodes=size["nodes"])
        run = simulation.run()
        results["hot"][setup.name] = figures_of(run, simulation) | {
            "p95_hot": simulation.p95_wait_of(hot.params["hot"])
        }
        print(
            f"hot    {setup.name:18} wait {run.total_wait:12,.0f} s  cold loads "
            f"{run.cold_loads:7,}  p95 hot {results['hot'][setup.name]['p95_hot']:7.1f} s  "
            f"wall {run.wall_seconds:6.1f} s",
            flush=True,
        )
    results["hot"]["floor"] = {"cold_loads": len(hot.models())}
    workloads["hot"] = hot
    about = {
        "ray_max_models": cap,
        "ray_safe_max_models": safe,
        "requests": {name: len(w.requests) for name, w in workloads.items()},
        "model_set": models.notes,
    }
    return results, about


def figures_of(run: RunResult, simulation: ClusterSimulation) -> dict[str, float]:
    return {
        "total_wait": run.total_wait,
        "cold_loads": run.cold_loads,
        "p95_wait": run.p95_wait,
        "hits": run.hits,
        "served": run.served,
        "rejected": run.rejected,
        "wall_seconds": run.wall_seconds,
        "over_memory": simulation.over_memory,
    }


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| workload | setup | total load wait | cold loads | p95 wait | p95 hot | hits "
        "| rejected | over memory | replay wall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for label in (label for label in ROWS if label in rows):
            r = rows[label]
            hot = f"{r['p95_hot']:.1f} s" if "p95_hot" in r else ""
            lines.append(
                f"| {name} | {label} | {r['total_wait']:,.0f} s | {r['cold_loads']:,.0f} | "
                f"{r['p95_wait']:.1f} s | {hot} | {r['hits'] / max(r['served'], 1):.1%} | "
                f"{r['rejected']:,.0f} | {r['over_memory']:,.0f} | {r['wall_seconds']:.1f} s |"
            )
        lines.append(f"| {name} | floor | | {rows['floor']['cold_loads']:,.0f} | | | | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 nodes, 200 models")
    parser.add_argument("--out", type=Path, default=None, help="write the results here")
    for key in FULL:
        help = f"instead of {FULL[key]:,} (writes nothing unless --out)"
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=help)
    parser.add_argument("--without", action="append", default=[], choices=ORDER[1:],
                        help="leave this setup out (random is the slowest to replay)")  # fmt: skip
    args = parser.parse_args()
    overrides = {k: getattr(args, k) for k in FULL if getattr(args, k) is not None}
    size = (QUICK if args.quick else FULL) | overrides
    scratch = args.quick or bool(overrides) or bool(args.without)
    started = time.perf_counter()
    order = tuple(label for label in ORDER if label not in args.without)
    results, about = replay(size, order)
    figures: list[dict[str, Any]] = []
    for name, rows in results.items():
        ours, floor = rows["modelpool"], rows["floor"]["cold_loads"]
        kept = rows.get(NO_SPREAD.name)
        if kept is not None:
            p95 = kept["p95_hot"] / max(ours["p95_hot"], 0.05)
            wait = kept["total_wait"] / max(ours["total_wait"], 1e-9)
            figures += [
                ratio(f"{name}: p95 wait of the hot models, no spreading / ours "
                      "(ours floored at 0.05 s)", p95),
                ratio(f"{name}: total load wait, no spreading / ours", wait),
                ratio(f"{name}: cold loads, ours / no spreading",
                      ours["cold_loads"] / max(kept["cold_loads"], 1), better="lower"),
            ]  # fmt: skip
            continue
        for label in (label for label in RAYS if label in rows):
            ray = rows[label]
            wait = ray["total_wait"] / max(ours["total_wait"], 1e-9)
            loads = ray["cold_loads"] / max(ours["cold_loads"], 1)
            figures += [
                ratio(f"{name}: total load wait, {label} / ours", wait, limit=WAIT_TARGET),
                ratio(f"{name}: cold loads, {label} / ours", loads, limit=LOADS_TARGET),
            ]
        figures += [
            ratio(f"{name}: cold loads, ours / floor", ours["cold_loads"] / max(floor, 1)),
            ratio(f"{name}: one hour replayed with our router", ours["wall_seconds"],
                  unit="s", better="lower", limit=HOUR_TARGET_S),
        ]  # fmt: skip
        if "random" in rows:
            share = rows["random"]["total_wait"] / max(ours["total_wait"], 1e-9)
            figures.append(ratio(f"{name}: total load wait, random / ours", share))
    seconds = time.perf_counter() - started
    options = [f"--{k.replace('_', '-')} {v}" for k, v in overrides.items()]
    options += [f"--without {label}" for label in args.without]
    command = " ".join(["bench/cluster_router.py"] + (["--quick"] if args.quick else []) + options)
    head = (
        f"Command: `.venv/bin/python {command}`; machine: {cpu_name()}, "
        f"Python {platform.python_version()}; {seconds:.0f} s in all.\n"
    )
    md = (
        f"# Cluster routing\n\n{head}\n{size['nodes']} nodes of 8 x 24 GB GPUs; "
        f"{about['model_set']}. Ray's `max_num_models_per_replica`: "
        f"{about['ray_max_models']} for `ray_default` (a node's memory over the mean model "
        f"size: it can hold more than fits, counted under 'over memory', where Ray would "
        f"run out of memory and this replay evicts more instead), "
        f"{about['ray_safe_max_models']} for `ray_default_safe` (over the largest model: "
        f"never over memory, evicts what would have fitted). Requests: "
        + ", ".join(f"{n} {c:,}" for n, c in about["requests"].items())
        + f".\n\n{table(results)}\n"
        + "\n".join(
            f"- {f['name']}: {f['value']:.2f}{' ' if f['unit'] == 's' else ''}{f['unit']}"
            + (f" (target {f['target']}) {'✓' if f['ok'] else '✗'}" if f["target"] else "")
            for f in figures
        )
        + "\n"
    )
    print(md)
    out = args.out or (Path(tempfile.mkdtemp()) if scratch else RESULTS)
    data = {"command": command, "size": size, **about, "results": results, "ratios": figures}
    write_text(out / "cluster_router.json", json.dumps(data, indent=2) + "\n")
    write_text(out / "cluster_router.md", md)
    print(f"wrote {out / 'cluster_router.md'}")


if __name__ == "__main__":
    main()
