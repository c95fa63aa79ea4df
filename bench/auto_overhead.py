"""What ``strategy: auto`` costs the proxy: added latency with auto on against a fixed strategy.

    .venv/bin/python bench/auto_overhead.py [--quick] [--interval 30] [--rounds 40]

Issue 21's last target: with ``auto`` on, the proxy's added latency moves by less than
5%. Three ``modelpool serve`` run side by side, as ``bench/proxy_overhead.py`` starts
one, each with the echo model loaded and three more declared (never loaded): the first
only hosts the echo server that "direct" requests go to; the two measured ones each
proxy to an echo server of their own (the same position: a server in front of the
echo that also answers direct requests ran faster streamed, its echo kept warmer),
one with ``strategy: hybrid`` and one with ``strategy: auto`` evaluating
every ``--interval`` seconds (default 10: thirty times as often as the default 5
minutes, so that several replays of its whole window, in their worker process, fall
inside the measurement). The same chat request goes to the direct echo and through
each server in rounds that alternate the order; the added p50 of each server is its
p50 minus the direct p50, non-streamed and streamed. Three whole runs, fresh servers
each; the evaluations that ran are read from ``GET /admin/strategy``.

Writes ``bench/results/auto_overhead.{json,md}`` (``--quick`` writes nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from kept_runs import add_runs_option, keep_runs, median_of_runs, runs_wanted, spread
from machine import describe_machine
from proxy_overhead import (
    FULL,
    MODES,
    QUICK,
    Plan,
    Target,
    latency,
    load_echo,
    percentile,
    running_modelpool,
)
from run_all import ratio

RESULTS = Path(__file__).parent / "results"
TARGET_CHANGE = 0.05
IDLE_MODELS = 3


HOST, FIXED, AUTO = "echo host", "hybrid", "auto"


async def measure(direct: Target, servers: list[Target], plan: Plan) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for mode in MODES:
        samples = await latency([direct, *servers], mode == "streaming", plan)
        p50 = {name: percentile(s, 0.5) for name, s in samples.items()}
        added = {t.name: p50[t.name] - p50[direct.name] for t in servers}
        result[mode] = {
            "p50_ms": {name: round(value, 4) for name, value in p50.items()},
            "added_p50_ms": {name: round(value, 4) for name, value in added.items()},
            "change": round(added[AUTO] / added[FIXED] - 1, 4),
            "samples": len(samples[direct.name]),
        }
    return result


def strategy_counts(url: str) -> tuple[int, int]:
    """The auto server's evaluations so far, and how many of them were skipped."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        body = client.get("/admin/strategy").json()
    return int(body["evaluations"]), int(body["skipped"])


def report(result: dict[str, Any], context: dict[str, Any]) -> str:
    lines = [
        "# strategy: auto, what it costs the proxy",
        "",
        f"Command: `{context['command']}`  ",
        f"Machine: {context['machine']}; load average {context['load_before']:.2f} before, "
        f"{context['load_after']:.2f} after.  ",
        f"auto evaluated every {context['interval']:g} s: {context['evaluations']} "
        f"evaluations ran during the {context['seconds']:g} s measured "
        f"({context['skipped']} skipped), medians of {context['runs']} whole runs (fresh "
        "servers each), each kept under `bench/results/auto_overhead/`; changes per run: "
        + "; ".join(
            f"{mode} {', '.join(f'{c:+.1%}' for c in changes)}"
            for mode, changes in context["changes"].items()
        )
        + ".",
        "",
        "| mode | samples | added p50, hybrid | added p50, auto | change |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        row = result[mode]
        added = row["added_p50_ms"]
        lines.append(
            f"| {mode} | {row['samples']:,} | {added[FIXED] * 1000:.0f} µs | "
            f"{added[AUTO] * 1000:.0f} µs | {row['change']:+.1%} |"
        )
    worst = max(abs(result[mode]["change"]) for mode in MODES)
    verdict = "met" if worst < TARGET_CHANGE else "not met"
    lines += [
        "",
        f"Target: the added p50 moves by less than {TARGET_CHANGE:.0%}: {verdict} "
        f"(the larger median change: {worst:.1%}).",
    ]
    return "\n".join(lines)


def headline(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        ratio(f"added p50 with auto, change, {mode}", round(abs(result[mode]["change"]) * 100, 1),
              "%", "lower", TARGET_CHANGE * 100)
        for mode in MODES
    ]  # fmt: skip


def one_run(auto_pool: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Three fresh servers (the direct echo's host, hybrid, auto), measured once."""
    context: dict[str, Any] = {}
    pools = {HOST: {"strategy": "hybrid"}, FIXED: {"strategy": "hybrid"}, AUTO: auto_pool}
    with contextlib.ExitStack() as stack:
        urls = {}
        for name, pool in pools.items():
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="auto-overhead-"))
            url, _ = stack.enter_context(
                running_modelpool(Path(folder), None, pool=pool, idle_models=IDLE_MODELS)
            )
            urls[name] = url
        direct, _ = load_echo(urls[HOST])
        servers = []
        for name in (FIXED, AUTO):
            load_echo(urls[name])
            servers.append(Target(name, int(urls[name].rsplit(":", 1)[1]), "/v1"))
        evaluated, skipped = strategy_counts(urls[AUTO])
        started = time.perf_counter()
        result = asyncio.run(measure(direct, servers, plan))
        context["seconds"] = round(time.perf_counter() - started, 1)
        after, skipped_after = strategy_counts(urls[AUTO])
        context["evaluations"], context["skipped"] = after - evaluated, skipped_after - skipped
    return {**context, "results": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    parser.add_argument("--interval", type=float, default=10.0, help="auto's evaluation period")
    parser.add_argument("--rounds", type=int, default=40, help="latency rounds per mode")
    add_runs_option(parser, "whole runs, fresh servers each")
    args = parser.parse_args()
    plan = replace(QUICK if args.quick else FULL, rounds=4 if args.quick else args.rounds)
    auto_pool = {"strategy": "auto", "auto_options": {"interval": args.interval}}
    context: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/auto_overhead.py", *sys.argv[1:]]),
        "machine": describe_machine(),
        "load_before": os.getloadavg()[0],
        "interval": args.interval,
    }
    runs = [one_run(auto_pool, plan) for _ in range(runs_wanted(args.runs, args.quick))]
    result = median_of_runs([run["results"] for run in runs])
    for key in ("seconds", "evaluations", "skipped"):
        context[key] = median_of_runs([run[key] for run in runs])
    context["runs"] = len(runs)
    context["changes"] = {
        mode: spread(runs, "results", mode, "change") for mode in MODES
    }  # fmt: skip
    context["load_after"] = os.getloadavg()[0]
    text = report(result, context)
    print(text)
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "auto_overhead.md").write_text(text + "\n")
        data = {**context, "python": sys.version, "plan": plan.__dict__, "results": result,
                "ratios": headline(result)}  # fmt: skip
        (RESULTS / "auto_overhead.json").write_text(json.dumps(data, indent=2) + "\n")
        keep_runs(RESULTS, "auto_overhead", runs)


if __name__ == "__main__":
    main()
