"""End to end: one mixed workload replayed in real time against ``modelpool serve`` with
the embedded default models, under the default strategy and under ``exclusive``.

    .venv/bin/python bench/e2e_replay.py [--rate 1.5] [--duration 60] [--seed 7] [--quick]

Two config files hold the embedded default's models and budget (``bootstrap``), the same
but for ``group: exclusive`` on every model in the second: one model resident at a time,
llama-swap's rule. Neither sets a strategy, so both run the config's default. Each run
starts its own server, cold (no warm-up: the first loads are part of what is measured),
on a free port with its own state dir, and replays one seeded schedule: Poisson
arrivals, a 50/25/25 mix of ``smollm2`` chat, ``smollm2-creative`` chat and ``minilm``
embeddings, each request repeating the previous one's model with probability 0.5.
Every request is sent at its time by the ``openai`` client, without waiting for the
others; latency runs from send to the whole answer. Loads and evictions come from the
server's ``/metrics``.

Prints a table and writes ``bench/results/e2e_replay.{json,md}`` (``--quick``: 20 s,
and writes nothing unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openai import AsyncOpenAI

from kept_runs import add_runs_option, keep_runs, median_of_runs, runs_wanted
from machine import cpu_name
from modelpool.bootstrap import DEFAULT_BUDGET, default_models
from modelpool.config import PoolSettings
from server import pool_figures, running_server

RESULTS = Path(__file__).parent / "results"
MIX = {"smollm2": 0.50, "smollm2-creative": 0.25, "minilm": 0.25}
STICKY = 0.5
"""Chance that a request asks for the same model as the one before it."""
PROMPTS = [
    *("Say hello in five words.", "Name three colours.", "What is the capital of France?"),
    *("Give me one fact about the Moon.", "Write a six-word story.", "What is 12 plus 30?"),
]
SENTENCES = [
    *("The cat sat on the mat.", "Memory budgets decide which models stay resident."),
    *("A swap costs a cold load.", "Embeddings map text to vectors.", "The quick brown fox."),
]
REQUEST_TIMEOUT = 300.0


@dataclass(frozen=True)
class Request:
    at: float
    """Seconds after the start of the replay."""
    model: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    model: str
    ok: bool
    sent: float
    done: float
    late: float
    """How long after its scheduled time the request was sent."""
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.done - self.sent


def make_schedule(seed: int, rate: float, duration: float) -> list[Request]:
    """Poisson arrivals at ``rate`` per second for ``duration`` seconds, sticky model mix."""
    rng = random.Random(seed)
    schedule: list[Request] = []
    at, model = rng.expovariate(rate), ""
    while at < duration:
        if not model or rng.random() >= STICKY:
            model = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if model == "minilm":
            body: dict[str, Any] = {"input": rng.sample(SENTENCES, rng.randint(1, 3))}
        else:
            content = rng.choice(PROMPTS)
            body = {"messages": [{"role": "user", "content": content}]}
            body["max_tokens"] = rng.randint(16, 32)
        schedule.append(Request(round(at, 4), model, body))
        at += rng.expovariate(rate)
    return schedule


def write_config(folder: Path, exclusive: bool) -> Path:
    """The embedded default's models and budget, each model in one group if ``exclusive``."""
    models = default_models()
    if exclusive:
        models = {name: {**spec, "group": "exclusive"} for name, spec in models.items()}
    pool = {"budgets": {"cpu": DEFAULT_BUDGET}, "state_dir": str(folder / "state")}
    path = folder / "modelpool.yaml"
    path.write_text(yaml.safe_dump({"pool": pool, "models": models}))
    return path


async def send(client: AsyncOpenAI, request: Request, start: float) -> Outcome:
    """Wait until ``request``'s time, send it, and time its whole answer."""
    await asyncio.sleep(max(0.0, start + request.at - time.perf_counter()))
    sent = time.perf_counter()
    try:
        if request.model == "minilm":
            await client.embeddings.create(model=request.model, **request.body)
        else:
            await client.chat.completions.create(model=request.model, **request.body)
        error = None
    except Exception as failure:  # counted, not raised: failures are a result
        error = f"{type(failure).__name__}: {failure}"[:200]
    done = time.perf_counter()
    late = sent - start - request.at
    return Outcome(request.model, error is None, sent - start, done - start, late, error)


async def replay(url: str, schedule: list[Request]) -> list[Outcome]:
    """Every request at its time, concurrently (no retries: a failure shows as one)."""
    client = AsyncOpenAI(
        base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT
    )
    async with client:
        start = time.perf_counter()
        return await asyncio.gather(*(send(client, r, start) for r in schedule))


def latencies(outcomes: list[Outcome]) -> dict[str, float | None]:
    seconds = [o.latency for o in outcomes if o.ok]
    if not seconds:
        return {"p50_s": None, "p95_s": None, "max_s": None}
    # "inclusive": linear interpolation between order statistics, as numpy's default.
    p95 = statistics.quantiles(seconds, n=20, method="inclusive")[18] if seconds[1:] else seconds[0]
    figures = (statistics.median(seconds), p95, max(seconds))
    return {k: round(v, 3) for k, v in zip(("p50_s", "p95_s", "max_s"), figures, strict=True)}


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    """Counts, latency percentiles, and throughput: completed requests per second from the
    first send to the last completion."""
    ok = [o for o in outcomes if o.ok]
    wall = max(o.done for o in outcomes) - min(o.sent for o in outcomes)
    errors = sorted({o.error for o in outcomes if o.error})
    return {
        "ok": len(ok),
        "failed": len(outcomes) - len(ok),
        **latencies(outcomes),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 3),
        "max_send_lag_s": round(max(o.late for o in outcomes), 3),
        "by_model": {m: latencies([o for o in outcomes if o.model == m]) for m in MIX},
        "errors": errors[:10],
    }


def run(name: str, folder: Path, schedule: list[Request]) -> dict[str, Any]:
    """One cold server (its own folder, state dir and port) and the whole replay."""
    (folder / name).mkdir()
    config = write_config(folder / name, exclusive=name == "exclusive")
    with running_server(config, folder / name) as url:
        outcomes = asyncio.run(replay(url, schedule))
        return {**summarize(outcomes), **pool_figures(url)}


def ratios(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each framed so that above 1 means the default strategy does better than exclusive;
    no target: the figures describe, they do not gate."""
    default, exclusive = runs["default"], runs["exclusive"]

    def ratio(name: str, top: float | None, bottom: float | None) -> dict[str, Any]:
        # NaN when a run had no success: a float still, as readers of "ratios" expect.
        value = round(top / bottom, 3) if top and bottom else float("nan")
        return {"name": name, "value": value, "unit": "×", "better": "higher"}

    return [
        {**r, "target": None, "ok": None}
        for r in (
            ratio("e2e p50 latency, exclusive / default", exclusive["p50_s"], default["p50_s"]),
            ratio("e2e p95 latency, exclusive / default", exclusive["p95_s"], default["p95_s"]),
            ratio(
                "e2e throughput, default / exclusive",
                default["throughput_rps"],
                exclusive["throughput_rps"],
            ),
        )
    ]


def table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """One row per run, then one per model and run (p50 / p95 s)."""
    lines = [
        "| run | ok | failed | p50 s | p95 s | max s | req/s | loads | evictions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| {name} | {r['ok']} | {r['failed']} | {r['p50_s']} | {r['p95_s']} "
            f"| {r['max_s']} | {r['throughput_rps']:.2f} | {r['loads']} | {r['evictions']} |"
        )
    lines += ["", f"| model | {' | '.join(f'{n} p50 / p95 s' for n in runs)} |"]
    lines.append("|---" * (len(runs) + 1) + "|")
    for model in MIX:
        cells = [runs[n]["by_model"][model] for n in runs]
        shown = " | ".join(f"{c['p50_s']} / {c['p95_s']}" for c in cells)
        lines.append(f"| {model} | {shown} |")
    return lines


def report(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        "# End-to-end replay: default strategy vs exclusive",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average (1 min) before / after "
        f"{result['load_before']:.2f} / {result['load_after']:.2f} (other work shows here).  ",
        f"Workload: {s['requests']} requests, Poisson at {s['rate']}/s for {s['duration']} s "
        f"(seed {s['seed']}), mix {s['mix']}, sticky {STICKY}; chat `max_tokens` 16-32. "
        f"Budget cpu {DEFAULT_BUDGET}; strategy `{s['strategy']}` (the config default) in "
        "both; `exclusive` puts every model in one group. Both servers start cold: the "
        "first loads are in the figures. Latency: send to the whole answer; req/s: "
        "completed requests per second from the first send to the last answer. "
        f"Every figure: the median over {result['repeats']} repeats of both servers "
        "(the order alternating), each kept under `bench/results/e2e_replay/`; "
        "each ratio is the median of the repeats' own ratios.",
        "",
        *table(result["runs"]),
        "",
        "Ratios, above 1 when the default strategy does better:",
        "",
        "| ratio | value | each repeat |",
        "|---|---|---|",
        *(
            f"| {r['name']} | {r['value']}{r['unit']} | {', '.join(map(str, r['runs']))} |"
            for r in result["ratios"]
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1.5, help="requests per second")
    parser.add_argument("--duration", type=float, help="seconds of arrivals (60; 20 --quick)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a ~20 s smoke run")
    parser.add_argument("--out", type=Path, help="write the results in this folder")
    add_runs_option(parser, "repeats of both servers")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, through the ``finally`` that stops the server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    duration = args.duration or (20.0 if args.quick else 60.0)
    schedule = make_schedule(args.seed, args.rate, duration)
    strategy = PoolSettings().strategy
    print(f"{len(schedule)} requests over {duration:g} s; strategy {strategy!r}; cold start")
    load_before = os.getloadavg()[0]
    repeats: list[dict[str, dict[str, Any]]] = []
    for number in range(runs_wanted(args.runs, args.quick)):
        runs: dict[str, dict[str, Any]] = {}
        # Alternate which server goes first, so that drift lands on both alike.
        order = ("default", "exclusive") if number % 2 == 0 else ("exclusive", "default")
        with tempfile.TemporaryDirectory(prefix="e2e-replay-") as folder:
            for name in order:
                runs[name] = run(name, Path(folder), schedule)
                print(f"{name}: {runs[name]['ok']} ok, {runs[name]['failed']} failed")
        repeats.append({name: runs[name] for name in ("default", "exclusive")})
    runs = median_of_runs(repeats)
    per_repeat = [ratios(repeat) for repeat in repeats]
    median_ratios = [
        {**first, "value": median_of_runs([r[index]["value"] for r in per_repeat]),
         "runs": [r[index]["value"] for r in per_repeat]}
        for index, first in enumerate(per_repeat[0])
    ]  # fmt: skip
    result = {
        "command": " ".join([".venv/bin/python bench/e2e_replay.py", *sys.argv[1:]]),
        "machine": cpu_name(),
        "python": sys.version,
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "settings": {
            "rate": args.rate,
            "duration": duration,
            "seed": args.seed,
            "requests": len(schedule),
            "mix": MIX,
            "sticky": STICKY,
            "budget": DEFAULT_BUDGET,
            "strategy": strategy,
            "cold_start": True,
        },
        "repeats": len(repeats),
        "runs": runs,
        "ratios": median_ratios,
    }
    print("\n".join(table(runs)))
    for r in result["ratios"]:
        print(f"{r['name']}: {r['value']}{r['unit']}")
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "e2e_replay.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "e2e_replay.md").write_text(report(result) + "\n")
        keep_runs(out, "e2e_replay", [{**result, "runs": r, "ratios": ratios(r)} for r in repeats])
        print(f"wrote {out / 'e2e_replay.json'} and .md")


if __name__ == "__main__":
    main()
