"""Soak: the stress mix for a long time, failing if memory, descriptors or latency grow.

    .venv/bin/python bench/soak.py [--minutes 60] [--clients 32] [--crash-every 4]
                                   [--interval 10] [--out bench/results]

Runs ``modelpool serve`` over eight real model servers under a budget for four and
drives it with ``tests/stress/mix.py`` (the mix of ``tests/stress``: 32 clients mixing
chat, admin load and admin unload, and a model server killed every ``--crash-every``
seconds) for ``--minutes`` minutes. Every ``--interval`` seconds it records:

- ``server_rss``: the RSS of the ``modelpool serve`` process (bytes);
- ``models_rss``, ``model_processes``: the summed RSS and the count of every live
  process under the server (the model servers);
- ``server_fds``, ``all_fds``: open file descriptors of the server, and of the server
  and every process under it;
- ``p50``, ``p95``: latency (seconds) of the chats answered during the interval, and
  ``chats``, how many.

**Growth.** A series "grows without bound" when, over the *second half* of the run,
the least-squares line through its samples rises by more than its tolerance, which is
the larger of an absolute floor and a share of the series' median over that half:

| series | floor | share |
|---|---:|---:|
| server_rss | 16 MiB | 10% |
| models_rss | 64 MiB | 25% |
| model_processes | 2 | 0 |
| server_fds | 16 | 20% |
| all_fds | 32 | 25% |
| p50 | 0.5 s | 50% |
| p95 | 2 s | 50% |

The first half is left out because it holds the warm-up (imports, connection pools,
allocator arenas, histories filling to their caps), which rises and then stops; a leak
rises at a steady rate, so it shows in the second half as a slope, whereas bounded
noise (how many models happen to be resident at a sample, a queue behind a swap)
gives a fitted rise near zero. The floors keep a short run's noise from counting: the
swaps alone move the model servers' RSS by tens of MiB between two samples, and on a
small shared machine a chat's latency is mostly its wait behind a swap, which other
programs' load stretches by hundreds of milliseconds. The judgement is of the rise over
the second half, so a slow leak fails an hour's run sooner than a ten minutes' one:
``slope_per_hour`` in the results says how fast each series moved. A series
needs six samples in the second half to be judged (a shorter run says so and is not
judged).

The run also fails on what ``tests/stress`` checks: any answer the server must never
give, books that do not equal the resident models once the clients stop, or a process
left after the server stops. Exit 0 when all holds, 1 otherwise. Writes
``bench/results/soak-<UTC time>.json`` (``--out``: into that folder): the command,
the machine, every sample, each series' verdict, the tally of answers and problems.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
# The mix and the server harness are the tests' own: the soak is the same run, longer.
sys.path[:0] = [str(ROOT / "tests" / "stress"), str(ROOT / "tests" / "e2e")]

from mix import Mix, config, latency_percentiles, settled_books, tagged  # noqa: E402
from server_process import running_server  # noqa: E402

from machine import describe_machine  # noqa: E402

MIB = 1024**2
MIN_JUDGED = 6


@dataclass(frozen=True)
class Tolerance:
    floor: float
    share: float


TOLERANCES = {
    "server_rss": Tolerance(16 * MIB, 0.10),
    "models_rss": Tolerance(64 * MIB, 0.25),
    "model_processes": Tolerance(2, 0.0),
    "server_fds": Tolerance(16, 0.20),
    "all_fds": Tolerance(32, 0.25),
    "p50": Tolerance(0.5, 0.50),
    "p95": Tolerance(2.0, 0.50),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--crash-every", type=float, default=4.0, metavar="SECONDS")
    parser.add_argument("--interval", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    started = datetime.now(UTC)
    report = asyncio.run(soak(args))
    report = {
        "command": " ".join([".venv/bin/python", "bench/soak.py", *sys.argv[1:]]),
        "machine": describe_machine(),
        "started": started.isoformat(timespec="seconds"),
        **report,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"soak-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print_summary(report, path)
    return 0 if report["ok"] else 1


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    tag = f"soak-{os.getpid()}"
    samples: list[dict[str, Any]] = []
    mix: Mix | None = None
    books: list[str] = ["the run did not reach its end"]
    stop_problem = None
    try:
        with running_server(config(tag)) as server:
            serve = server.process.pid
            mix = Mix(
                server.url,
                serve,
                tag,
                clients=args.clients,
                seconds=args.minutes * 60,
                max_requests=10**9,  # bounded by time alone
                crash_every=args.crash_every,
            )
            await sample_while(mix, serve, args.interval, samples)
            books = await settled_books(server.url, serve, tag)
    except AssertionError as error:  # running_server found processes left under it
        stop_problem = str(error)[:2000]
    left = [p.pid for p in tagged(tag)]  # running_server has checked those under it
    verdicts = {name: judge(samples, name, tolerance) for name, tolerance in TOLERANCES.items()}
    grew = [name for name, verdict in verdicts.items() if verdict["grows"]]
    problems = mix.problems if mix is not None else []
    return {
        "minutes": args.minutes,
        "clients": args.clients,
        "crash_every_s": args.crash_every,
        "interval_s": args.interval,
        "ok": not (grew or problems or books or left or stop_problem),
        "grew": grew,
        "verdicts": verdicts,
        "tally": dict(sorted(mix.tally.items())) if mix is not None else {},
        "problems": problems[:100],
        "problem_count": len(problems),
        "books": books,
        "stop_problem": stop_problem,
        "left_after_stop": left,
        "samples": samples,
    }


async def sample_while(
    mix: Mix, serve: int, interval: float, samples: list[dict[str, Any]]
) -> None:
    """Run the mix, appending a sample to ``samples`` every ``interval`` seconds."""
    run = asyncio.create_task(mix.run())
    began = time.monotonic()
    seen = 0  # chats already counted in an earlier sample
    while True:
        await asyncio.wait({run}, timeout=interval)
        if run.done():  # a shorter interval, the clients winding down: not a sample
            break
        sample = await asyncio.to_thread(measure, serve)
        window = [seconds for _, seconds in mix.latencies[seen:]]
        seen += len(window)
        samples.append(
            {
                "at": round(time.monotonic() - began, 1),
                **sample,
                **latency_percentiles(window),
                "chats": len(window),
            }
        )
        print(_line(samples[-1]), flush=True)
    await run


def measure(serve: int) -> dict[str, int]:
    """RSS and open descriptors of the server and of every live process under it."""
    server = psutil.Process(serve)
    below = []
    for process in server.children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                below.append((process.memory_info().rss, process.num_fds()))
        except psutil.NoSuchProcess:
            continue  # stopped between the listing and the reading
    server_fds = server.num_fds()
    return {
        "server_rss": server.memory_info().rss,
        "models_rss": sum(rss for rss, _ in below),
        "model_processes": len(below),
        "server_fds": server_fds,
        "all_fds": server_fds + sum(fds for _, fds in below),
    }


def judge(samples: list[dict[str, Any]], name: str, tolerance: Tolerance) -> dict[str, Any]:
    """The rise of the least-squares line through the second half of ``name``'s samples,
    against its tolerance (see the module's docstring)."""
    half = samples[len(samples) // 2 :]
    points = [(s["at"], s[name]) for s in half if s[name] is not None]
    if len(points) < MIN_JUDGED:
        return {"grows": False, "judged": False, "points": len(points)}
    times = [t for t, _ in points]
    values = [v for _, v in points]
    slope = statistics.linear_regression(times, values).slope  # per second
    rise = slope * (times[-1] - times[0])
    median = statistics.median(values)
    tolerated = max(tolerance.floor, tolerance.share * abs(median))
    return {
        "grows": rise > tolerated,
        "judged": True,
        "points": len(points),
        "median": median,
        "slope_per_hour": slope * 3600,
        "rise_over_second_half": rise,
        "tolerated": tolerated,
    }


def _line(sample: dict[str, Any]) -> str:
    p50, p95 = sample["p50"], sample["p95"]
    latency = "-" if p50 is None else f"{p50 * 1000:.0f}/{p95 * 1000:.0f} ms"
    return (
        f"{sample['at']:7.1f} s  server {sample['server_rss'] / MIB:6.1f} MiB "
        f"{sample['server_fds']:4d} fds  models {sample['model_processes']} "
        f"{sample['models_rss'] / MIB:6.1f} MiB {sample['all_fds']:4d} fds  "
        f"chats {sample['chats']:5d} p50/p95 {latency}"
    )


def print_summary(report: dict[str, Any], path: Path) -> None:
    print(f"\n{report['command']}  ({report['machine']})")
    print(f"tally: {report['tally']}")
    for name, verdict in report["verdicts"].items():
        if not verdict["judged"]:
            print(f"{name:16s} not judged ({verdict['points']} samples in the second half)")
            continue
        print(
            f"{name:16s} median {verdict['median']:.4g}, second half rose "
            f"{verdict['rise_over_second_half']:+.4g} (tolerated {verdict['tolerated']:.4g})"
            f"{'  GROWS' if verdict['grows'] else ''}"
        )
    for problem in report["problems"][:10]:
        print(f"problem: {problem}")
    for line in report["books"]:
        print(f"books: {line}")
    if report["stop_problem"]:
        print(f"at stop: {report['stop_problem']}")
    if report["left_after_stop"]:
        print(f"left after stop: {report['left_after_stop']}")
    print(f"{'ok' if report['ok'] else 'FAILED'}; written to {path}")


if __name__ == "__main__":
    sys.exit(main())
