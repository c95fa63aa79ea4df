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

Why it wins or loses: `auto` follows the leader, so it pays only if the ranking of the
replayed window carries over to the next interval. From the tables of its own
evaluations (no further replay: `sim/auto_hindsight.py`), each draw also gives how
often the window's best was the next interval's best, and the mean rank correlation
of the two rankings. `--explain zipf:3` prints every evaluation's table of one draw.
Writes bench/results/auto_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from modelpool.plugins import POLICIES
from modelpool.sim.auto_hindsight import foresight
from modelpool.sim.auto_replay import AutoReplay, simulate_auto
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


def draw_of(name: str, models: ModelSet, seed: int, requests: int | None) -> Workload:
    if name == "phases+bursty+zipf":
        return concatenated(models, seed, requests)
    return make_workload(name, models, seed=seed, requests=requests)


def measure(
    workload: Workload, models: ModelSet, budgets: Any
) -> tuple[dict[str, float], AutoReplay]:
    """Total wait of every fixed strategy, the bound and auto on ``workload``, and auto's
    hook (its evaluations)."""
    waits = {
        name: Simulation(workload, models, POLICIES.get(name)(), budgets=budgets).run().total_wait
        for name in POLICIES.names()
    }
    bound = FurthestNextUsePolicy(workload, models, warm_tier=models.warm_budget > 0)
    waits[BOUND_LABEL] = Simulation(workload, models, bound, budgets=budgets).run().total_wait
    result, hook = simulate_auto(workload, models, budgets=budgets)
    waits["auto"] = result.total_wait
    waits["auto switches"] = float(len(hook.switches))
    return waits, hook


def foresight_of(hook: AutoReplay) -> dict[str, float]:
    """How well the window ranked the strategies for the next interval, from the
    evaluations whose window still started at the first request."""
    tables = [e.table for e in hook.evaluations if e.at <= hook.options.window]
    seen = foresight(tables)
    return {
        "compared": seen.compared,
        "hits": seen.hits,
        "rank_correlation": seen.rank_correlation,
        "strategies": seen.strategies,
    }


def explain(spec: str, requests: int | None, budget: str) -> None:
    """Every evaluation of one draw (``workload:seed``): the window's table, the choice."""
    name, _, seed = spec.rpartition(":")
    models = demo_model_set()
    workload = draw_of(name, models, int(seed), requests)
    waits, hook = measure(workload, models, parse_budgets([budget], models))
    print(f"{name} seed {seed}, {len(workload.requests)} requests; totals (s):")
    for label, wait in sorted(waits.items(), key=lambda kv: kv[1]):
        print(f"  {label:28s} {wait:10.0f}")
    strategies = sorted({row.strategy for e in hook.evaluations for row in e.table})
    print("\nevaluations: the window's total wait per strategy (s), then the choice")
    print(f"{'at':>6s} {'reqs':>5s} " + " ".join(f"{n[:9]:>9s}" for n in strategies))
    for e in hook.evaluations:
        waits_now = {row.strategy: row.total_wait for row in e.table}
        cells = " ".join(f"{waits_now.get(n, float('nan')):9.0f}" for n in strategies)
        print(f"{e.at:6.0f} {e.requests:5d} {cells}  {e.current} -> {e.chosen}")
    seen = foresight_of(hook)
    print(
        f"\nthe window's best was the next interval's best {seen['hits']:.0f} of "
        f"{seen['compared']:.0f} times (a blind pick: 1 in {seen['strategies']:.0f}); "
        f"mean rank correlation {seen['rank_correlation']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=None, help="per workload (default: 3600)")
    parser.add_argument("--budget", default="16GB")
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the .json")
    parser.add_argument("--explain", metavar="WORKLOAD:SEED", help="one draw's evaluations")
    args = parser.parse_args()
    if args.explain:
        explain(args.explain, args.requests, args.budget)
        return
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
            workload = draw_of(name, models, seed, args.requests)
            waits, hook = measure(workload, models, budgets)
            fixed = {k: v for k, v in waits.items() if k in POLICIES.names()}
            best = min(fixed, key=lambda k: fixed[k])
            bound = waits[BOUND_LABEL]
            draw = {
                "workload": name, "seed": seed, "requests": len(workload.requests),
                "waits": waits, "best_fixed": best,
                "auto_over_best": waits["auto"] / fixed[best] if fixed[best] else 1.0,
                "auto_over_bound": waits["auto"] / bound if bound else 1.0,
                "auto_beats_every_fixed": all(waits["auto"] < v for v in fixed.values()),
                "foresight": foresight_of(hook),
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
        "(mean) | auto ÷ bound: worst | auto beats every fixed | switches (mean) "
        "| window's best = next interval's best | rank correlation, window vs next |",
        "|---|---|---|---|---|---|---|---|---|",
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
            f"| {max(over_bound):.2f}× | {beats}/{len(rows)} | {switches:.1f} | "
            + foresight_cells(rows)
        )
    seen = [d["foresight"] for d in draws if "foresight" in d]
    compared = sum(f["compared"] for f in seen)
    if compared:
        hits = sum(f["hits"] for f in seen)
        strategies = max(f["strategies"] for f in seen)
        rho = sum(f["rank_correlation"] * f["compared"] for f in seen) / compared
        lines += [
            "",
            f"Over all draws, at {compared} evaluations the replayed window's best strategy "
            f"was the best of the next interval {hits} times ({hits / compared:.0%}; a blind "
            f"pick among {strategies}: {1 / strategies:.0%}); the two rankings' mean rank "
            f"correlation was {rho:.2f}.",
        ]
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


def foresight_cells(rows: list[dict[str, Any]]) -> str:
    seen = [d["foresight"] for d in rows if "foresight" in d]
    compared = sum(f["compared"] for f in seen)
    if not compared:
        return "– | – |"
    hits = sum(f["hits"] for f in seen)
    strategies = max(f["strategies"] for f in seen)
    rho = sum(f["rank_correlation"] * f["compared"] for f in seen) / compared
    return f"{hits}/{compared} (blind: 1/{strategies}) | {rho:.2f} |"


if __name__ == "__main__":
    main()
