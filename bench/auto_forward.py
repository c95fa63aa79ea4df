"""Does replaying forward from the pool's state say which strategy waits least next?

    .venv/bin/python bench/auto_forward.py [--seeds 3] [--samples 5] [--runs-only]

`strategy: auto` replays the last hour from an empty pool and follows the leader, which
is the next interval's best little more often than a blind pick (bench/auto_quality.py).
This checks the other way to ask (issue 21): from the state the pool is in (a fork of
the running simulation: what is resident and warm, each model's stats, the work in
flight; `sim/auto_forward.py`), which strategy waits least on a forecast of the next
interval?

On the draws of bench/auto_quality.py (the demo set, 16 GB GPU, 24 GB warm tier), the
run under `hybrid` (auto's start) is forked every 5 minutes. The fact: each strategy's
wait when the fork plays on with the real requests of the next 5 minutes. Against it:

- `window, from empty`: what `auto` does now (the last hour replayed from an empty pool);
- `last interval, forward`: the last 5 minutes again, played on from the state (ranked by
  total wait, by p95 wait, by cold loads);
- `resample, forward`: the window's per-model rates, resampled (mean of `--samples`);
- `window, forward`: the last hour, played on from the state;
- `stay`: `hybrid`, always.

Then whole runs, ÷ the best fixed strategy of each draw: `auto` following the forward
replay of the last interval, of the resampled rates, and of the fact itself (an oracle:
what knowing the next 5 minutes exactly would give); the 10% hysteresis for the
forecasts, none for the oracle. Writes bench/results/auto_forward.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from auto_quality import draw_of
from modelpool.config import PoolSettings
from modelpool.core.traffic_window import Arrival
from modelpool.plugins import POLICIES
from modelpool.sim.auto_choice import CandidateRow, choose_strategy
from modelpool.sim.auto_forward import forward_table, repeat_last, resample
from modelpool.sim.auto_hindsight import foresight_of_pairs
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet, demo_model_set, parse_budgets
from modelpool.sim.replay import PoolPicture, replay_table
from modelpool.sim.workload import Request, Workload

RESULTS = Path(__file__).parent / "results"
WORKLOADS = ("phases+bursty+zipf", "zipf", "bursty", "phases", "diurnal")
INTERVAL = 300.0
WINDOW = 3600.0
HYSTERESIS = 0.10
START = "hybrid"
VARIANTS = (
    ("window, from empty", "total_wait"),
    ("last interval, forward", "total_wait"),
    ("last interval, forward", "p95_wait"),
    ("last interval, forward", "cold_loads"),
    ("resample, forward", "total_wait"),
    ("window, forward", "total_wait"),
    ("stay", "total_wait"),
)

Waits = dict[str, dict[str, float]]
"""strategy -> figure (total_wait, p95_wait, cold_loads) -> value."""


def figures(table: Sequence[CandidateRow]) -> Waits:
    return {
        r.strategy: {"total_wait": r.total_wait, "p95_wait": r.p95_wait, "cold_loads": r.cold_loads}
        for r in table
    }


def next_requests(workload: Workload, models: ModelSet, now: float) -> list[Request]:
    """The draw's real requests of the next interval, with their service seconds."""
    return [
        Request(r.time, r.model, service=r.service if r.service is not None
                else models[r.model].service_seconds(r.prompt_tokens, r.output_tokens))
        for r in workload.requests if now <= r.time < now + INTERVAL
    ]  # fmt: skip


class Observer:
    """At each evaluation of the run under ``hybrid``: the fact and every forecast."""

    def __init__(self, workload: Workload, models: ModelSet, picture: PoolPicture, samples: int):
        self.workload, self.models, self.picture, self.samples = workload, models, picture, samples
        self.names = POLICIES.names()
        self.rng = random.Random(0)
        self.rows: list[dict[str, Any]] = []

    def __call__(self, simulation: Simulation) -> None:
        now = simulation.clock.now
        coming = next_requests(self.workload, self.models, now)
        if not coming:
            return
        window = [a for a in simulation.arrived if a.at >= now - WINDOW]
        names = self.names
        sampled = [
            figures(forward_table(simulation, resample(window, now, INTERVAL, self.rng), names))
            for _ in range(self.samples)
        ]
        row = {
            "at": now,
            "fact": figures(forward_table(simulation, coming, names)),
            "window, from empty": figures(replay_table(window, self.picture, names, START)),
            "last interval, forward": figures(
                forward_table(simulation, repeat_last(window, now, INTERVAL), names)
            ),
            "resample, forward": {
                n: {k: sum(s[n][k] for s in sampled) / len(sampled) for k in sampled[0][n]}
                for n in names
            },
            "window, forward": figures(
                forward_table(simulation, repeat_last(window, now, WINDOW), names)
            ),
            "stay": {n: {"total_wait": float(n != START)} for n in names},
        }
        self.rows.append(row)


class Follow:
    """``auto`` choosing by a forward replay from the state: of ``forecast``'s requests,
    the candidates' total waits averaged over ``samples`` forecasts."""

    def __init__(
        self,
        forecast: Callable[[Simulation, list[Arrival]], list[Request]],
        hysteresis: float,
        samples: int = 1,
    ) -> None:
        self.forecast, self.hysteresis, self.samples = forecast, hysteresis, samples
        self.switches = 0

    def __call__(self, simulation: Simulation) -> None:
        now = simulation.clock.now
        window = [a for a in simulation.arrived if a.at >= now - WINDOW]
        totals: dict[str, float] = {}
        for _ in range(self.samples):
            requests = self.forecast(simulation, window)
            if not requests:
                return
            for row in forward_table(simulation, requests, POLICIES.names()):
                totals[row.strategy] = totals.get(row.strategy, 0.0) + row.total_wait
        current = simulation.scheduler.policy.name
        table = [CandidateRow(n, t / self.samples, 0.0, 0) for n, t in totals.items()]
        chosen, _ = choose_strategy(current, table, self.hysteresis)
        if chosen != current:
            simulation.scheduler.set_policy(POLICIES.get(chosen)())
            self.switches += 1


def oracle_of(
    workload: Workload, models: ModelSet
) -> Callable[[Simulation, list[Arrival]], list[Request]]:
    """A forecast that is the fact: the draw's real requests of the next interval."""

    def forecast(simulation: Simulation, window: list[Arrival]) -> list[Request]:
        return next_requests(workload, models, simulation.clock.now)

    return forecast


def resampling(rng: random.Random) -> Callable[[Simulation, list[Arrival]], list[Request]]:
    """A forecast: the next interval resampled from the window's per-model rates."""

    def forecast(simulation: Simulation, window: list[Arrival]) -> list[Request]:
        return resample(window, simulation.clock.now, INTERVAL, rng)

    return forecast


def run_with(workload: Workload, models: ModelSet, budgets: Any, hook: Follow) -> float:
    return (
        Simulation(workload, models, POLICIES.get(START)(), budgets=budgets, every=(INTERVAL, hook))
        .run()
        .total_wait
    )


def pairs_of(rows: list[dict[str, Any]], variant: str, figure: str) -> list[tuple[Any, Any]]:
    return [
        (
            {n: w.get(figure, w["total_wait"]) for n, w in row[variant].items()},
            {n: w["total_wait"] for n, w in row["fact"].items()},
        )
        for row in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=5, help="resamples averaged")
    parser.add_argument("--budget", default="16GB")
    parser.add_argument(
        "--runs-only",
        action="store_true",
        help="only the whole runs (no foresight, no resampled auto), with auto's own from "
        "bench/results/auto_quality.json; writes auto_forward_runs.{json,md}",
    )
    args = parser.parse_args()
    recorded = recorded_auto() if args.runs_only else {}
    models = demo_model_set()
    budgets = parse_budgets([args.budget], models)
    picture = PoolPicture(models.models, budgets, models.warm_budget, PoolSettings())
    started = time.perf_counter()
    draws: list[dict[str, Any]] = []
    for name in WORKLOADS:
        for seed in range(args.seeds):
            workload = draw_of(name, models, seed, None)
            observer = Observer(workload, models, picture, args.samples)
            if not args.runs_only:
                Simulation(
                    workload, models, POLICIES.get(START)(), budgets=budgets,
                    every=(INTERVAL, observer),
                ).run()  # fmt: skip
            fixed = {
                n: Simulation(workload, models, POLICIES.get(n)(), budgets=budgets).run().total_wait
                for n in POLICIES.names()
            }
            best = min(fixed.values())
            rng = random.Random(seed)  # the whole runs' resamples, one stream a draw
            follows = {
                "forward, last interval": Follow(
                    lambda s, w: repeat_last(w, s.clock.now, INTERVAL), HYSTERESIS
                ),
                "forward, resample": Follow(resampling(rng), HYSTERESIS, args.samples),
                "oracle": Follow(oracle_of(workload, models), 0.0),
            }
            if args.runs_only:
                del follows["forward, resample"]
            runs = {k: run_with(workload, models, budgets, f) for k, f in follows.items()}
            runs[START] = fixed[START]
            if (name, seed) in recorded:
                runs["auto now"] = recorded[name, seed]
            draw = {
                "workload": name, "seed": seed, "rows": observer.rows, "fixed": fixed,
                "over_best": {k: v / best for k, v in runs.items()},
                "switches": {k: f.switches for k, f in follows.items()},
            }  # fmt: skip
            draws.append(draw)
            print(
                f"[{time.perf_counter() - started:6.0f} s] {name} seed {seed}: "
                + ", ".join(f"{k} {v:.3f}x" for k, v in draw["over_best"].items()),
                flush=True,
            )
    write(draws, args)


def foresight_by(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each forecast's foresight over ``rows`` (one draw's evaluations)."""
    seen = {}
    for variant, figure in VARIANTS if rows else ():
        got = foresight_of_pairs(pairs_of(rows, variant, figure))
        seen[f"{variant} by {figure}"] = {
            "compared": got.compared, "hits": got.hits,
            "rank_correlation": round(got.rank_correlation, 4), "regret": round(got.regret, 4),
        }  # fmt: skip
    return seen


def recorded_auto() -> dict[tuple[str, int], float]:
    """``auto``'s total wait on each draw, as bench/auto_quality.py recorded it (the same
    draws and the same fixed strategies: its runs need not be repeated here)."""
    path = RESULTS / "auto_quality.json"
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    if saved["args"].get("requests") is not None or saved["args"]["budget"] != "16GB":
        return {}  # other draws than these
    return {(d["workload"], d["seed"]): d["waits"]["auto"] for d in saved["draws"]}


def write(draws: list[dict[str, Any]], args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    stem = "auto_forward_runs" if args.runs_only else "auto_forward"
    kept = [  # each draw's foresight, not every evaluation's tables (megabytes)
        {k: v for k, v in d.items() if k != "rows"} | {"foresight": foresight_by(d.get("rows", []))}
        for d in draws
    ]
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"args": vars(args), "draws": kept}, indent=1) + "\n"
    )
    rows = [row for d in draws for row in d.get("rows", [])]
    lines = [
        "# Replaying forward from the pool's state (simulated, demo set)",
        "",
        f"`bench/auto_forward.py --seeds {args.seeds} --samples {args.samples} "
        f"--budget {args.budget}{' --runs-only' if args.runs_only else ''}`: "
        + (
            f"whole runs only, choosing every {INTERVAL:.0f} s from a fork of the run"
            if args.runs_only
            else f"the run under `{START}` forked every {INTERVAL:.0f} s; the fact is each "
            "strategy's wait on the next interval's real requests from the fork."
        ),
    ]
    if rows:
        lines += [
            "",
            "| forecast | ranked by | its best = the interval's best | rank correlation "
            "| extra wait of following it |",
            "|---|---|---|---|---|",
        ]
    for variant, figure in VARIANTS if rows else ():
        seen = foresight_of_pairs(pairs_of(rows, variant, figure))
        rho = "–" if variant == "stay" else f"{seen.rank_correlation:.2f}"  # ranks one only
        lines.append(
            f"| {variant} | {figure} | {seen.hits}/{seen.compared} ({seen.hit_rate:.0%}; "
            f"blind 1/{seen.strategies}) | {rho} | {seen.regret:.1%} |"
        )
    if rows:
        lines += [
            "",
            "Extra wait: what the forecast's pick waited beyond each interval's best, as a "
            "share of what the intervals' best waited, over the intervals compared.",
        ]
    lines += [
        "",
        "Whole runs, ÷ the best fixed strategy of each draw: worst (mean)",
        "",
        "| workload | " + " | ".join(draws[0]["over_best"]) + " |",
        "|---|" + "---|" * len(draws[0]["over_best"]),
    ]
    for name in dict.fromkeys(d["workload"] for d in draws):
        mine = [d for d in draws if d["workload"] == name]
        cells = []
        for key in draws[0]["over_best"]:
            values = [d["over_best"][key] for d in mine]
            cells.append(f"{max(values):.3f}× ({sum(values) / len(values):.3f}×)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    everything = {key: [d["over_best"][key] for d in draws] for key in draws[0]["over_best"]}
    lines.append(
        "| all | "
        + " | ".join(f"{max(v):.3f}× ({sum(v) / len(v):.3f}×)" for v in everything.values())
        + " |"
    )
    lines.append("")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
