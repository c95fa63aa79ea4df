"""Side by side with a peer: LiteLLM's proxy and modelpool in front of one echo server.

    .venv/bin/python bench/peer_proxy.py [--quick] [--out FOLDER] [--venv FOLDER]

Installs a pinned LiteLLM (``litellm[proxy]==LITELLM_VERSION``) once into a virtualenv
of its own, outside the project (``~/.cache/modelpool-bench/litellm-VERSION``, or
``--venv``; a folder without the ``.installed`` stamp is made anew), so the project's
environment never sees it. Then starts ``modelpool serve`` with one ``process`` model
whose server is ``bench/echo_upstream.py`` (as ``bench/proxy_overhead.py`` does), and
``litellm --config`` whose one model ``echo`` is ``openai/echo`` at that same echo
server. One upstream for both proxies, so that the only difference between the three
paths (direct, through modelpool, through LiteLLM) is the proxy: the measurements
alternate and never overlap, so neither proxy's traffic slows the other's.

LiteLLM is kept off the network and as quiet as it allows: the local model cost map
(``LITELLM_LOCAL_MODEL_COST_MAP``), no telemetry, no database, no callbacks, logging at
ERROR; one worker (its default), as modelpool runs one process; no master key (it
refuses to start without one unless told it may), as modelpool's side has no API keys.

For each mode (non-streamed; streamed, 16 SSE events then ``[DONE]``):

1. Latency: rounds of sequential requests on a keep-alive connection per path (a fresh
   one each round), the order of the paths rotating from round to round. Per round, a
   proxy's added p50 (p95) is its p50 (p95) minus direct's in the same round; the
   figures are the medians over rounds.
2. Throughput: a fixed number of connections, one request in flight each, in slices
   that rotate over the paths; the median slice per path, as a share of direct. CPU
   per request: user + system time of the proxy's whole process tree (LiteLLM's
   workers included; modelpool's process only, as its echo child is the upstream).

The load generator, percentile and CPU readings are ``bench/proxy_overhead.py``'s.
Prints a table and writes ``bench/results/peer_proxy.{json,md}`` (``--out``: in that
folder instead, also after ``--quick``; ``--quick`` alone writes nothing). The
json's ``"ratios"`` hold LiteLLM's figures over modelpool's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from machine import describe_machine
from proxy_overhead import (
    CHUNKS,
    HOST,
    MODES,
    Connection,
    Plan,
    Target,
    describe_stack,
    load_echo,
    percentile,
    running_modelpool,
    throughput,
    timed,
)
from run_all import ratio
from server import free_port

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
LITELLM_VERSION = "1.108.7"
"""The newest LiteLLM whose ``[proxy]`` extra installs from the registry here (from
1.110 on it needs a ``litellm-proxy`` package the registry does not have), and the
version behind the issue's first figures."""
REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"
DEFAULT_VENV = Path.home() / ".cache" / "modelpool-bench" / f"litellm-{LITELLM_VERSION}"
STAMP = ".installed"
START_TIMEOUT = 180.0
"""LiteLLM imports a great deal before it listens: tens of seconds on a busy 2-core VM."""
STOP_TIMEOUT = 20.0
ROUND_WARMUP = 5
"""Untimed requests on each round's fresh connection."""
PROXIES = ("modelpool", "litellm")
PATHS = ("direct", *PROXIES)


# The same knobs as proxy_overhead's, fewer of each: LiteLLM is a hundred times slower.
FULL = Plan(warmup=100, rounds=7, per_round=60, concurrency=16, slices=3, slice_seconds=3.0)
QUICK = Plan(warmup=20, rounds=3, per_round=30, concurrency=16, slices=1, slice_seconds=1.0)


def peer_venv(folder: Path) -> Path:
    """The LiteLLM virtualenv's ``bin`` folder, made once: ``python3 -m venv`` (the
    interpreter this runs on, never the project's venv) and ``pip install`` the pin."""
    stamp = folder / STAMP
    if stamp.exists() and stamp.read_text().strip() == REQUIREMENT:
        return folder / "bin"
    if folder.exists():  # an install that stopped half-way
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    base = Path(getattr(sys, "_base_executable", sys.executable))
    print(f"installing {REQUIREMENT} into {folder} (once)", file=sys.stderr)
    subprocess.run([str(base), "-m", "venv", str(folder)], check=True)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q"]
    if subprocess.run([*pip, REQUIREMENT], check=False).returncode != 0:
        raise SystemExit(f"pip could not install {REQUIREMENT} into {folder}: see above")
    stamp.write_text(REQUIREMENT + "\n")
    return folder / "bin"


def litellm_environment() -> dict[str, str]:
    """What keeps LiteLLM off the network at start and out of the measurement's way."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "OPENAI"))}
    return {
        **keep,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",  # no .env file read
        "DISABLE_SCHEMA_UPDATE": "True",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def running_litellm(
    bin_folder: Path, upstream_port: int, folder: Path
) -> Iterator[tuple[Target, int]]:
    """``litellm --config`` in a session of its own, ``echo`` routed to the upstream;
    its whole process group is stopped on the way out, whatever happened."""
    config = {
        "model_list": [
            {
                "model_name": "echo",
                "litellm_params": {
                    "model": "openai/echo",
                    "api_base": f"http://{HOST}:{upstream_port}/v1",
                    "api_key": "unused",
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "set_verbose": False, "callbacks": []},
        "general_settings": {
            "disable_spend_logs": True,
            # No keys on either side: modelpool's bench config has none either.
            "dangerously_permit_weak_or_unset_master_key": True,
        },
    }
    path = folder / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = folder / "litellm.log"
    command = [str(bin_folder / "litellm"), "--config", str(path)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--host", HOST, "--port", str(port), "--telemetry", "False"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=litellm_environment(),
            cwd=folder,
            start_new_session=True,
        )
    try:
        wait_litellm(f"http://{HOST}:{port}", process, log_path)
        yield Target("litellm", port, "/v1"), process.pid
    finally:
        stop_group(process)


def wait_litellm(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"litellm exited:\n{log.read_text(errors='replace')[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/liveliness", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)  # it gives no other readiness signal
    raise RuntimeError(f"litellm not ready in {START_TIMEOUT:.0f} s:\n{log.read_text()[-4000:]}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, then SIGKILL to it and to any descendant left."""
    members: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        members = tree(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def rotated(items: list[Target], turn: int) -> list[Target]:
    """The paths in a rotating order, so that none always goes first or last."""
    shift = turn % len(items)
    return items[shift:] + items[:shift]


async def latency_rounds(
    targets: list[Target], stream: bool, plan: Plan
) -> dict[str, list[list[float]]]:
    """Per target, the samples of each round (ms), rounds rotating the order. Each round
    opens its own connection per target (a few requests on it untimed): a connection
    left idle while a slow peer's round runs would pass uvicorn's 5 s keep-alive."""
    requests = {t.name: t.request(stream) for t in targets}
    rounds: dict[str, list[list[float]]] = {t.name: [] for t in targets}

    async def run(target: Target, warmup: int, count: int) -> list[float]:
        connection = await Connection.open(target.port)
        try:
            await timed(connection, requests[target.name], warmup)
            return await timed(connection, requests[target.name], count)
        finally:
            await connection.close()

    for target in targets:
        await run(target, plan.warmup, 0)
    for round_ in range(plan.rounds):
        for target in rotated(targets, round_):
            rounds[target.name].append(await run(target, ROUND_WARMUP, plan.per_round))
    return rounds


def summarise(rounds: dict[str, list[list[float]]]) -> dict[str, Any]:
    """Per path its pooled percentiles; per proxy the median over rounds of its added
    p50 and p95 (the proxy's percentile minus direct's in the same round)."""
    per_round = {
        name: [(percentile(s, 0.50), percentile(s, 0.95)) for s in samples]
        for name, samples in rounds.items()
    }
    result: dict[str, Any] = {
        "latency": {
            name: {
                "p50_ms": round(statistics.median(p50 for p50, _ in per_round[name]), 4),
                "p95_ms": round(statistics.median(p95 for _, p95 in per_round[name]), 4),
            }
            for name in rounds
        },
        "added": {},
    }
    direct = per_round["direct"]
    for proxy in PROXIES:
        added50 = [p[0] - d[0] for p, d in zip(per_round[proxy], direct, strict=True)]
        added95 = [p[1] - d[1] for p, d in zip(per_round[proxy], direct, strict=True)]
        result["added"][proxy] = {
            "p50_ms": round(statistics.median(added50), 4),
            "p95_ms": round(statistics.median(added95), 4),
            "p50_ms_rounds": [round(a, 4) for a in added50],
        }
    return result


async def measure(
    targets: list[Target], plan: Plan, cpu: dict[str, list[psutil.Process]]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for mode in MODES:
        stream = mode == "streaming"
        row = summarise(await latency_rounds(targets, stream, plan))
        rates = await throughput(targets, stream, plan, cpu, order=rotated)
        row["throughput"] = rates
        row["share_of_direct"] = {
            proxy: round(rates[proxy]["rps"] / rates["direct"]["rps"], 4) for proxy in PROXIES
        }
        result[mode] = row
    return result


def headline(result: dict[str, Any]) -> list[dict[str, Any]]:
    """LiteLLM's figures over modelpool's, per mode, and modelpool's own added p50."""
    ratios = []
    for mode in MODES:
        r = result[mode]
        ours, theirs = r["added"]["modelpool"]["p50_ms"], r["added"]["litellm"]["p50_ms"]
        ratios.append(ratio(f"modelpool added p50 latency, {mode}", ours, "ms", "lower"))
        ratios.append(ratio(f"LiteLLM added p50 latency, {mode}", theirs, "ms", "lower"))
        ratios.append(
            ratio(f"LiteLLM added p50 / modelpool added p50, {mode}", round(theirs / ours, 1))
        )
        rps = r["throughput"]
        ratios.append(
            ratio(
                f"modelpool req/s / LiteLLM req/s, {mode}",
                round(rps["modelpool"]["rps"] / rps["litellm"]["rps"], 2),
            )
        )
        cpu_ratio = rps["litellm"]["cpu_us_per_request"] / rps["modelpool"]["cpu_us_per_request"]
        ratios.append(
            ratio(
                f"LiteLLM CPU per request / modelpool CPU per request, {mode}", round(cpu_ratio, 1)
            )
        )
    return ratios


def report(result: dict[str, Any], plan: Plan, context: dict[str, Any], quick: bool) -> str:
    lines = [
        "# Side by side with LiteLLM",
        "",
        f"Command: `.venv/bin/python bench/peer_proxy.py{' --quick' if quick else ''}`  ",
        f"Machine: {context['machine']}, a VM shared with other work; one run; client, "
        "both proxies and the echo server share its cores, unpinned.  ",
        f"Peer: LiteLLM {LITELLM_VERSION} (`{REQUIREMENT}` in its own virtualenv), "
        "`litellm --config` with one worker, no database, no callbacks, local cost map.  ",
        f"modelpool's stack: {context['stack']}.  ",
        "Upstream: one `bench/echo_upstream.py` (answers at once; streams are "
        f"{CHUNKS} `data:` events then `[DONE]`), the same server behind both proxies.  ",
        "Load average (1 min) before / after: "
        f"{context['load_before']:.2f} / {context['load_after']:.2f}.",
        "",
        f"Latency: {plan.rounds} rounds × {plan.per_round} sequential requests per path "
        f"after {plan.warmup} warm-up, on a fresh keep-alive connection per path and round "
        f"({ROUND_WARMUP} requests on it untimed first), the order rotating each round; "
        "time to the last byte. Added = the proxy's percentile minus direct's "
        "in the same round; medians over rounds.",
        "",
        "| mode | direct p50 / p95 ms | modelpool added p50 / p95 ms "
        "| LiteLLM added p50 / p95 ms | LiteLLM / modelpool (p50) |",
        "|---|---|---|---|---|",
    ]
    for mode in MODES:
        r = result[mode]
        d, ours, theirs = r["latency"]["direct"], r["added"]["modelpool"], r["added"]["litellm"]
        lines.append(
            f"| {mode} | {d['p50_ms']:.3f} / {d['p95_ms']:.3f} "
            f"| **{ours['p50_ms']:.3f}** / {ours['p95_ms']:.3f} "
            f"| **{theirs['p50_ms']:.2f}** / {theirs['p95_ms']:.2f} "
            f"| {theirs['p50_ms'] / ours['p50_ms']:,.0f}× |"
        )
    lines += [
        "",
        f"Throughput: {plan.concurrency} connections, one request in flight each; median "
        f"of {plan.slices} slices of {plan.slice_seconds:g} s per path, rotating. CPU "
        "µs/request: the proxy's whole process tree (the echo server's, direct).",
        "",
        "| mode | direct req/s | modelpool req/s (of direct) | LiteLLM req/s (of direct) "
        "| echo CPU µs/req | modelpool CPU µs/req | LiteLLM CPU µs/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        r = result[mode]
        rps, share = r["throughput"], r["share_of_direct"]
        lines.append(
            f"| {mode} | {rps['direct']['rps']:,.0f} "
            f"| **{rps['modelpool']['rps']:,.0f}** ({share['modelpool']:.1%}) "
            f"| **{rps['litellm']['rps']:,.0f}** ({share['litellm']:.1%}) "
            f"| {rps['direct']['cpu_us_per_request']:,.0f} "
            f"| {rps['modelpool']['cpu_us_per_request']:,.0f} "
            f"| {rps['litellm']['cpu_us_per_request']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    parser.add_argument("--out", type=Path, help="write the results in this folder")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="LiteLLM's virtualenv")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    bin_folder = peer_venv(args.venv)
    context: dict[str, Any] = {
        "machine": describe_machine(),
        "stack": describe_stack(),
        "peer": REQUIREMENT,
        "load_before": os.getloadavg()[0],
    }
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="peer-proxy-") as folder,
        running_modelpool(Path(folder), None) as (url, process),
    ):
        direct, echo = load_echo(url)
        ours = Target("modelpool", int(url.rsplit(":", 1)[1]), "/v1")
        with running_litellm(bin_folder, direct.port, Path(folder)) as (theirs, pid):
            cpu = {
                "direct": echo,
                "modelpool": [psutil.Process(process.pid)],
                "litellm": tree(pid),
            }
            context["litellm_processes"] = len(cpu["litellm"])
            result = asyncio.run(measure([direct, ours, theirs], plan, cpu))
    context["load_after"] = os.getloadavg()[0]
    context["seconds"] = round(time.monotonic() - started, 1)
    text = report(result, plan, context, args.quick)
    print(text)
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "peer_proxy.md").write_text(text + "\n")
        data = {
            **context,
            "python": sys.version,
            "plan": plan.__dict__,
            "results": result,
            "ratios": headline(result),
        }
        (out / "peer_proxy.json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
