"""Proxy overhead: what modelpool adds in front of a hot model's own server.

    .venv/bin/python bench/proxy_overhead.py [--quick] [--out FOLDER] [--pin]

Starts ``modelpool serve`` as a user would, with one ``process`` model whose server is
``bench/echo_upstream.py`` (an OpenAI-compatible responder that answers at once, so
the figures are the proxy's, not a model's), loads it, and then sends the same chat
completion request, non-streamed and streamed (16 SSE events then ``[DONE]``), both
straight to that echo server ("direct": its URL is read from the model's log tail) and
through modelpool:

1. Latency: sequential requests on one keep-alive connection per side, after a
   warm-up, in rounds that alternate the sides so drift lands on both alike. The added
   latency at a percentile is that percentile through modelpool minus the same
   percentile direct (time to the last byte of the answer, a stream's end included).
2. Throughput: requests/s with a fixed number of connections each keeping one request
   in flight, direct and through modelpool, alternating slices; the median slice per
   side. Also modelpool's own CPU time per request (user + system, from ``/proc``).

Targets, printed as ratios: < 1 ms median added latency; ≥ 90% of direct throughput.
The json's ``"ratios"`` (for ``bench/run_all.py``) hold those figures per mode.

The load generator is this process, on raw asyncio streams with a minimal HTTP/1.1
reader (httpx's own per-request work would take CPU from the proxy: the machine is
small). Client, proxy and echo server share the machine's cores; ``--pin`` puts the
client on the last core and modelpool with its echo server on the others.

Prints a table and writes ``bench/results/proxy_overhead.{json,md}`` (``--out``: in
that folder instead, also after ``--quick``; ``--quick`` alone writes nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from kept_runs import add_runs_option, keep_runs, median_of_runs, runs_wanted, spread
from machine import describe_machine
from run_all import ratio
from server import free_port, stop, wait_ready

BENCH = Path(__file__).parent
PACED_DELAY = 0.05
"""Seconds the paced upstream takes per answer: SmolLM2-135M's few tokens on 2 CPU cores
take longer; a 7B model on a GPU about this for a short answer."""
RESULTS = BENCH / "results"
ECHO = BENCH / "echo_upstream.py"
HOST = "127.0.0.1"
ADDED_TARGET_MS = 1.0
RATIO_TARGET = 0.90
CHUNKS = 16
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "Say hello and tell me one fact about the Moon."},
]
MODES = ("non-streaming", "streaming")


@dataclass(frozen=True)
class Plan:
    """How many requests and how long: the full run, or ``--quick``."""

    warmup: int
    rounds: int
    per_round: int
    concurrency: int
    slices: int
    slice_seconds: float


FULL = Plan(warmup=500, rounds=20, per_round=250, concurrency=32, slices=5, slice_seconds=3.0)
QUICK = Plan(warmup=100, rounds=4, per_round=100, concurrency=32, slices=2, slice_seconds=1.0)


@dataclass(frozen=True)
class Target:
    """Where requests go: ``port`` on loopback, ``prefix`` before ``/chat/completions``."""

    name: str
    port: int
    prefix: str

    def request(self, stream: bool) -> bytes:
        body = json.dumps(
            {"model": "echo", "messages": MESSAGES, "max_tokens": 32, "stream": stream}
        ).encode()
        head = (
            f"POST {self.prefix}/chat/completions HTTP/1.1\r\nhost: {HOST}:{self.port}\r\n"
            f"content-type: application/json\r\naccept: */*\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads its whole answer
    (``Content-Length`` or chunked): the least client work that still reads every byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port, limit=2**20)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> int:
        """Send ``request``; the answer's status once its last byte is in."""
        self.writer.write(request)
        reader = self.reader
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length: int | None = None
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if chunked:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers are sent
                    break
                await reader.readexactly(size + 2)
        elif length:
            await reader.readexactly(length)
        return status

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between order statistics."""
    ordered = sorted(samples)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def timed(connection: Connection, request: bytes, count: int) -> list[float]:
    """``count`` sequential requests; each one's latency in milliseconds."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        status = await connection.exchange(request)
        samples.append((clock() - start) / 1e6)
        if status != 200:
            raise RuntimeError(f"status {status}")
    return samples


async def latency(targets: list[Target], stream: bool, plan: Plan) -> dict[str, list[float]]:
    """Per target, every sample of ``plan.rounds`` rounds that alternate the targets."""
    connections = {t.name: await Connection.open(t.port) for t in targets}
    requests = {t.name: t.request(stream) for t in targets}
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        for name, connection in connections.items():
            await timed(connection, requests[name], plan.warmup)
        for round_ in range(plan.rounds):
            order = list(connections) if round_ % 2 == 0 else list(reversed(connections))
            for name in order:
                samples[name] += await timed(connections[name], requests[name], plan.per_round)
    finally:
        for connection in connections.values():
            await connection.close()
    return samples


async def throughput_slice(
    target: Target, stream: bool, concurrency: int, seconds: float
) -> tuple[int, float]:
    """Requests completed by ``concurrency`` connections, one in flight each, sending for
    ``seconds``; and the seconds from the first to the last answer counted."""
    connections = [await Connection.open(target.port) for _ in range(concurrency)]
    request = target.request(stream)
    # One exchange each before the clock starts (together: a slow upstream would
    # otherwise spend the warm-up in series).
    await asyncio.gather(*(connection.exchange(request) for connection in connections))
    start = time.perf_counter()
    deadline = start + seconds
    done = 0

    async def worker(connection: Connection) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            if await connection.exchange(request) != 200:
                raise RuntimeError("a request failed")
            done += 1

    try:
        await asyncio.gather(*(worker(c) for c in connections))
        elapsed = time.perf_counter() - start
    finally:
        for connection in connections:
            await connection.close()
    return done, elapsed


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def alternated(targets: list[Target], turn: int) -> list[Target]:
    """The targets in order on even turns, reversed on odd ones."""
    return targets if turn % 2 == 0 else list(reversed(targets))


async def throughput(
    targets: list[Target],
    stream: bool,
    plan: Plan,
    cpu: dict[str, list[psutil.Process]],
    order: Callable[[list[Target], int], list[Target]] = alternated,
) -> dict[str, dict[str, Any]]:
    """Per target: median requests/s over ``plan.slices`` slices, and the CPU µs per
    request of the processes in ``cpu[target]`` (summed over every slice); ``order``
    says who goes first in each slice, so that drift lands on every target alike."""
    for target in targets:  # warm-up slice, not counted
        await throughput_slice(target, stream, plan.concurrency, min(1.0, plan.slice_seconds))
    rates: dict[str, list[float]] = {t.name: [] for t in targets}
    used = dict.fromkeys(rates, 0.0)
    count = dict.fromkeys(rates, 0)
    for slice_ in range(plan.slices):
        for target in order(targets, slice_):
            before = cpu_seconds(cpu[target.name])
            done, elapsed = await throughput_slice(
                target, stream, plan.concurrency, plan.slice_seconds
            )
            used[target.name] += cpu_seconds(cpu[target.name]) - before
            count[target.name] += done
            rates[target.name].append(done / elapsed)
    return {
        name: {
            "rps": round(statistics.median(rates[name]), 1),
            "rps_slices": [round(r, 1) for r in rates[name]],
            "cpu_us_per_request": round(used[name] / count[name] * 1e6, 1),
        }
        for name in rates
    }


def echo_model(delay: float) -> dict[str, Any]:
    """The config of a process model whose server is the echo upstream."""
    return {
        "backend": "process",
        "command": [
            *(sys.executable, str(ECHO), "--chunks", str(CHUNKS), "--delay", str(delay)),
            *("--host", "${HOST}", "--port", "${PORT}"),
        ],
        "health": "/health",
        "memory": "20MB",
        "device": "cpu",
    }


@contextlib.contextmanager
def running_modelpool(
    folder: Path,
    pin: set[int] | None,
    delay: float = 0.0,
    pool: dict[str, Any] | None = None,
    idle_models: int = 0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``modelpool serve`` with the echo model, on a free port; stopped with SIGINT
    (which ends the echo server too), killed with its children if it will not stop.
    ``pool``: more pool settings; ``idle_models``: copies of the echo model declared
    under other ids and never loaded (a pool of more than one model)."""
    ids = ["echo", *(f"idle-{n}" for n in range(1, idle_models + 1))]
    config = {
        "server": {"access_log": False},
        "pool": {"state_dir": str(folder / "state"), "budgets": {"cpu": "1GB"}, **(pool or {})},
        "models": {model: echo_model(delay) for model in ids},
    }
    path = folder / "modelpool.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "server.log").open("wb")
    command = [sys.executable, "-m", "modelpool", "serve", "--config", str(path)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None,
    )
    url = f"http://{HOST}:{port}"
    try:
        wait_ready(url, process, folder / "server.log")
        yield url, process
    finally:
        stop(process)
        log.close()


def load_echo(url: str) -> tuple[Target, list[psutil.Process]]:
    """Load the echo model; where its server listens, and that server's process."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        client.post("/admin/models/echo/load").raise_for_status()
        view = client.get("/admin/models/echo").json()
    found = [m for line in view["log_tail"] if (m := re.search(r"listening on (\S+)", line))]
    if not found:
        raise RuntimeError(f"the echo server did not say where it listens: {view['log_tail']}")
    port = int(found[-1].group(1).rsplit(":", 1)[1])
    echo = [
        child
        for child in psutil.Process().children(recursive=True)
        if str(ECHO) in child.cmdline() and f"{port}" in child.cmdline()
    ]
    return Target("direct", port, "/v1"), echo


def describe_stack() -> str:
    """The HTTP stack ``modelpool serve`` runs on here: uvicorn picks uvloop and
    httptools by itself when they are installed."""
    versions = []
    for name in ("uvicorn", "starlette", "fastapi", "httpx", "aiohttp"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{', '.join(versions)}; uvicorn loop {loop}, HTTP parser {parser}"


async def measure(
    direct: Target, proxied: Target, plan: Plan, cpu: dict[str, list[psutil.Process]]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    targets = [direct, proxied]
    for mode in MODES:
        stream = mode == "streaming"
        samples = await latency(targets, stream, plan)
        rows = {
            name: {f"p{q}_ms": round(percentile(s, q / 100), 4) for q in (50, 90, 99)}
            for name, s in samples.items()
        }
        rates = await throughput(targets, stream, plan, cpu)
        result[mode] = {
            "latency": rows,
            "samples": len(samples[direct.name]),
            "added_p50_ms": round(rows[proxied.name]["p50_ms"] - rows[direct.name]["p50_ms"], 4),
            "added_p99_ms": round(rows[proxied.name]["p99_ms"] - rows[direct.name]["p99_ms"], 4),
            "throughput": rates,
            "ratio": round(rates[proxied.name]["rps"] / rates[direct.name]["rps"], 4),
        }
    return result


async def measure_paced(
    direct: Target, proxied: Target, plan: Plan, cpu: dict[str, list[psutil.Process]]
) -> dict[str, Any]:
    """Throughput when the upstream takes ``PACED_DELAY`` per answer, as a fast model
    does: what modelpool costs a model server that does real work."""
    result: dict[str, Any] = {}
    for mode in MODES:
        rates = await throughput([direct, proxied], mode == "streaming", plan, cpu)
        ratio = rates[proxied.name]["rps"] / rates[direct.name]["rps"]
        result[mode] = {"throughput": rates, "ratio": round(ratio, 4)}
    return result


def headline(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures ``bench/run_all.py`` tabulates: added median latency and the share of
    direct throughput kept, against an instant and a paced upstream, per mode."""
    ratios = []
    for mode in MODES:
        added = result[mode]["added_p50_ms"]
        ratios.append(ratio(f"added p50 latency, {mode}", added, "ms", "lower", ADDED_TARGET_MS))
    for upstream, results in (("instant", result), ("paced", result["paced"])):
        for mode in MODES:
            share = round(results[mode]["ratio"] * 100, 1)
            name = f"throughput of direct, {mode}, {upstream} upstream"
            ratios.append(ratio(name, share, "%", "higher", RATIO_TARGET * 100))
    return ratios


def report(
    result: dict[str, Any], plan: Plan, context: dict[str, Any], pin: bool, quick: bool
) -> str:
    command = ".venv/bin/python bench/proxy_overhead.py" + (" --pin" if pin else "")
    if context["runs"] != runs_wanted(None, quick):
        command += f" --runs {context['runs']}"
    placement = (
        "client pinned to the last core, modelpool and the echo server to the others"
        if pin
        else "client, modelpool and the echo server unpinned"
    )
    lines = [
        "# Proxy overhead",
        "",
        f"Command: `{command}{' --quick' if quick else ''}`  ",
        f"Machine: {context['machine']}; {placement}. All three share "
        f"{os.cpu_count()} cores, so the proxy's CPU competes with the client's and the "
        "upstream's: a busier machine than a real deployment, where the model's server "
        "works on an accelerator.  ",
        "Upstream: `bench/echo_upstream.py` (answers at once; streams are "
        f"{CHUNKS} `data:` events then `[DONE]`). Load generator: raw asyncio streams "
        "(httpx as the client would spend more CPU per request than the proxy under test).  ",
        f"Server stack: {context['stack']}.  ",
        "Load average (1 min) before / after: "
        f"{context['load_before']:.2f} / {context['load_after']:.2f} (other work on the "
        "machine shows here).  ",
        f"Every figure: the median of {context['runs']} whole runs, each kept under "
        "`bench/results/proxy_overhead/`; added p50 ms per run: "
        + "; ".join(
            f"{mode} {', '.join(f'{v:.3f}' for v in values)}"
            for mode, values in context["added_p50_ms_runs"].items()
        )
        + ".",
        "",
        f"Latency: {plan.rounds} rounds × {plan.per_round} sequential requests per side "
        f"after {plan.warmup} warm-up, one keep-alive connection each; time to the last "
        "byte. Added = the percentile through modelpool minus the same percentile direct.",
        "",
        "| mode | direct p50 / p99 ms | modelpool p50 / p99 ms | added p50 / p99 ms "
        f"| p50 vs < {ADDED_TARGET_MS:g} ms target |",
        "|---|---|---|---|---|",
    ]
    for mode in MODES:
        r = result[mode]
        d, p = r["latency"]["direct"], r["latency"]["modelpool"]
        verdict = "met" if r["added_p50_ms"] < ADDED_TARGET_MS else "missed"
        lines.append(
            f"| {mode} | {d['p50_ms']:.3f} / {d['p99_ms']:.3f} | {p['p50_ms']:.3f} / "
            f"{p['p99_ms']:.3f} | **{r['added_p50_ms']:.3f}** / {r['added_p99_ms']:.3f} "
            f"| {r['added_p50_ms'] / ADDED_TARGET_MS:.2f}× of target, {verdict} |"
        )
    lines += [
        "",
        f"Throughput: {plan.concurrency} connections, one request in flight each; median "
        f"of {plan.slices} slices of {plan.slice_seconds:g} s per side, alternating. CPU "
        "µs/request: the echo server's (direct) or modelpool's alone (through it).",
        "",
        "| mode | direct req/s | modelpool req/s | ratio | vs ≥ 90% target "
        "| echo CPU µs/req | modelpool CPU µs/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        r = result[mode]
        d, p = r["throughput"]["direct"], r["throughput"]["modelpool"]
        verdict = "met" if r["ratio"] >= RATIO_TARGET else "missed"
        lines.append(
            f"| {mode} | {d['rps']:,.0f} | {p['rps']:,.0f} | **{r['ratio']:.1%}** "
            f"| {r['ratio'] / RATIO_TARGET:.2f}× of target, {verdict} "
            f"| {d['cpu_us_per_request']:,.0f} | {p['cpu_us_per_request']:,.0f} |"
        )
    cpu = result["non-streaming"]["throughput"]["modelpool"]["cpu_us_per_request"]
    lines += [
        "",
        "With an upstream that answers at once, the ratio compares the proxy's CPU per "
        "request with the echo server's, not with a model's: modelpool's "
        f"{cpu:,.0f} µs per non-streamed request caps it near {1e6 / cpu:,.0f} req/s per "
        "core, the figure to set against a real model server's own rate.",
        "",
        f"Paced upstream: the same echo server taking {PACED_DELAY * 1000:g} ms per answer "
        "on average (0.5× to 1.5×) "
        f"(a fast model's pace), {plan.concurrency} connections: the throughput a model "
        "server that does real work keeps behind modelpool.",
        "",
        "| mode | direct req/s | modelpool req/s | ratio | vs ≥ 90% target |",
        "|---|---|---|---|---|",
    ]
    for mode in MODES:
        r = result["paced"][mode]
        d, p = r["throughput"]["direct"], r["throughput"]["modelpool"]
        verdict = "met" if r["ratio"] >= RATIO_TARGET else "missed"
        lines.append(
            f"| {mode} | {d['rps']:,.0f} | {p['rps']:,.0f} | **{r['ratio']:.1%}** "
            f"| {r['ratio'] / RATIO_TARGET:.2f}× of target, {verdict} |"
        )
    return "\n".join(lines)


def one_run(plan: Plan, server_cores: set[int] | None) -> dict[str, Any]:
    """Both measurements, each against a server of its own: the instant upstream, then
    the paced one."""
    cores = sorted(os.sched_getaffinity(0))
    with (
        tempfile.TemporaryDirectory(prefix="proxy-overhead-") as folder,
        running_modelpool(Path(folder), server_cores) as (url, process),
    ):
        direct, echo = load_echo(url)
        if server_cores:
            os.sched_setaffinity(0, {cores[-1]})
        proxied = Target("modelpool", int(url.rsplit(":", 1)[1]), "/v1")
        cpu = {"direct": echo, "modelpool": [psutil.Process(process.pid)]}
        result = asyncio.run(measure(direct, proxied, plan, cpu))
    with (
        tempfile.TemporaryDirectory(prefix="proxy-overhead-") as folder,
        running_modelpool(Path(folder), server_cores, PACED_DELAY) as (url, process),
    ):
        direct, echo = load_echo(url)
        proxied = Target("modelpool", int(url.rsplit(":", 1)[1]), "/v1")
        cpu = {"direct": echo, "modelpool": [psutil.Process(process.pid)]}
        result["paced"] = asyncio.run(measure_paced(direct, proxied, plan, cpu))
    if server_cores:
        os.sched_setaffinity(0, set(cores))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    parser.add_argument("--out", type=Path, help="write the results in this folder")
    parser.add_argument("--pin", action="store_true", help="client on its own core")
    add_runs_option(parser, "whole runs")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    context: dict[str, Any] = {
        "machine": describe_machine(),
        "stack": describe_stack(),
        "load_before": os.getloadavg()[0],
    }
    cores = sorted(os.sched_getaffinity(0))
    server_cores = set(cores[:-1]) if args.pin and len(cores) > 1 else None
    runs = [one_run(plan, server_cores) for _ in range(runs_wanted(args.runs, args.quick))]
    result = median_of_runs(runs)
    context["load_after"] = os.getloadavg()[0]
    context["runs"] = len(runs)
    context["added_p50_ms_runs"] = {mode: spread(runs, mode, "added_p50_ms") for mode in MODES}
    text = report(result, plan, context, args.pin, args.quick)
    print(text)
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "proxy_overhead.md").write_text(text + "\n")
        data = {
            **context,
            "python": sys.version,
            "pinned": args.pin,
            "plan": plan.__dict__,
            "targets": {"added_p50_ms": ADDED_TARGET_MS, "throughput_ratio": RATIO_TARGET},
            "results": result,
            "ratios": headline(result),
        }
        (out / "proxy_overhead.json").write_text(json.dumps(data, indent=2) + "\n")
        keep_runs(out, "proxy_overhead", [{**context, "results": run} for run in runs])


if __name__ == "__main__":
    main()
