"""``strategy: auto`` against every fixed strategy and the bound, simulated (issue 21).

    .venv/bin/python bench/auto_quality.py [--seeds 10] [--requests N] [--budget 16GB]

Two measurements on the `demo` set (16 GB GPU, 24 GB warm tier), replayed through the
pool's own scheduler on a virtual clock (the same anywhere):

1. A workload whose character changes: task phases, then bursts, then Zipf with drift,
   each a third of the time, concatenated. Target: `auto` waits less in total than
   every fixed strategy.
2. Each synthetic workload (zipf, bursty, phases, diurnal) over seeds 0..N-1. Targets:
   `auto` within 1.10x of the best fixed strategy of each draw (in hindsight), and
   within 1.15x of the furthest-next-use bound on every draw.

`auto` runs with its defaults (interval 5 min, window 1 h, every strategy a candidate,
10% hysteresis), starting from hybrid, with the model set's costs as its measured ones.
Writes bench/results/auto_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from modelpool.plugins import POLICIES
from modelpool.sim.auto_replay import simulate_auto
from modelpool.sim.bound import BOUND_LABEL, FurthestNextUsePolicy
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet, demo_model_set, parse_budgets
from modelpool.sim.workload import Request, Workload
from modelpool.sim.workloads import make_workload

RESULTS = Path(__file__).parent / "results"
WORKLOADS = ("zipf", "bursty", "phases", "diurnal")
BEST_TARGET = 1.10
BOUND_TARGET = 1.15


def concatenated(models: ModelSet, seed: int, requests: int | None) -> Workload:
    """phases, then bursty, then zipf: each 20 minutes, one after another."""
    parts, offset = [], 0.0
    each = None if requests is None else requests // 3
    for name in ("phases", "bursty", "zipf"):
        part = make_workload(name, models, seed=seed, requests=each or 1200, duration=1200.0)
        parts += [Request(r.time + offset, r.model, r.prompt_tokens, r.output_tokens, r.service)
                  for r in part.requests]  # fmt: skip
        offset += 1200.0
    return Workload("phases+bursty+zipf", tuple(parts), "phases, bursty, zipf: 20 min each")


def measure(workload: Workload, models: ModelSet, budgets: Any) -> dict[str, float]:
    """Total wait of every fixed strategy, the bound and auto on ``workload``."""
    waits = {
        name: Simulation(workload, models, POLICIES.get(name)(), budgets=budgets).run().total_wait
        for name in POLICIES.names()
    }
    bound = FurthestNextUsePolicy(workload, models, warm_tier=models.warm_budget > 0)
    waits[BOUND_LABEL] = Simulation(workload, models, bound, budgets=budgets).run().total_wait
    result, hook = simulate_auto(workload, models, budgets=budgets)
    waits["auto"] = result.total_wait
    waits["auto switches"] = float(len(hook.switches))
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=None, help="per workload (default: 3600)")
    parser.add_argument("--budget", default="16GB")
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()
    if args.table_only:
        saved = json.loads((RESULTS / "auto_quality.json").read_text())
        write(saved["draws"], argparse.Namespace(**saved["args"]))
        return
    models = demo_model_set()
    budgets = parse_budgets([args.budget], models)
    started = time.perf_counter()
    draws: list[dict[str, Any]] = []
    for name in ("phases+bursty+zipf", *WORKLOADS):
        for seed in range(args.seeds):
            if name == "phases+bursty+zipf":
                workload = concatenated(models, seed, args.requests)
            else:
                workload = make_workload(name, models, seed=seed, requests=args.requests)
            waits = measure(workload, models, budgets)
            fixed = {k: v for k, v in waits.items() if k in POLICIES.names()}
            best = min(fixed, key=lambda k: fixed[k])
            bound = waits[BOUND_LABEL]
            draw = {
                "workload": name, "seed": seed, "requests": len(workload.requests),
                "waits": waits, "best_fixed": best,
                "auto_over_best": waits["auto"] / fixed[best] if fixed[best] else 1.0,
                "auto_over_bound": waits["auto"] / bound if bound else 1.0,
                "auto_beats_every_fixed": all(waits["auto"] < v for v in fixed.values()),
            }  # fmt: skip
            draws.append(draw)
            print(
                f"[{time.perf_counter() - started:6.1f} s] {name} seed {seed}: auto "
                f"{waits['auto']:.0f} s ({draw['auto_over_best']:.2f}x best fixed {best}, "
                f"{draw['auto_over_bound']:.2f}x bound), {waits['auto switches']:.0f} switches",
                flush=True,
            )
    write(draws, args)


def write(draws: list[dict[str, Any]], args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    if not getattr(args, "table_only", False):
        (RESULTS / "auto_quality.json").write_text(
            json.dumps({"args": vars(args), "draws": draws}, indent=2) + "\n"
        )
    lines = [
        "# strategy: auto against the fixed strategies (simulated, demo set)",
        "",
        f"`bench/auto_quality.py --seeds {args.seeds}"
        + (f" --requests {args.requests}" if args.requests else "")
        + f" --budget {args.budget}`",
        "",
        "| workload | seeds | auto ÷ best fixed: worst (mean) | hybrid ÷ best fixed: worst "
        "(mean) | auto ÷ bound: worst | auto beats every fixed | switches (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(d["workload"] for d in draws):
        rows = [d for d in draws if d["workload"] == name]
        over_best = [d["auto_over_best"] for d in rows]
        over_bound = [d["auto_over_bound"] for d in rows]
        beats = sum(d["auto_beats_every_fixed"] for d in rows)
        switches = sum(d["waits"]["auto switches"] for d in rows) / len(rows)
        hybrid = [d["waits"]["hybrid"] / d["waits"][d["best_fixed"]] for d in rows]
        lines.append(
            f"| {name} | {len(rows)} | {max(over_best):.2f}× ({sum(over_best) / len(rows):.2f}×) "
            f"| {max(hybrid):.2f}× ({sum(hybrid) / len(rows):.2f}×) "
            f"| {max(over_bound):.2f}× | {beats}/{len(rows)} | {switches:.1f} |"
        )
    met_best = all(d["auto_over_best"] <= BEST_TARGET for d in draws)
    met_bound = all(d["auto_over_bound"] <= BOUND_TARGET for d in draws)
    lines += [
        "",
        f"Within {BEST_TARGET:.2f}× of the best fixed strategy on every draw: "
        f"{'yes' if met_best else 'no'}; within {BOUND_TARGET:.2f}× of the bound on every "
        f"draw: {'yes' if met_bound else 'no'}.",
        "",
    ]
    (RESULTS / "auto_quality.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
