"""NVML against torch on this machine's GPUs: what each probe reads, and what it costs.

    .venv/bin/python bench/gpu_probes.py [--out FOLDER]

For each GPU CUDA sees: the UUID torch gives it and the one the NVML probe resolves
``cuda:N`` to (they must match), NVML's v2 memory figures (``used`` includes
``reserved``), ``cudaMemGetInfo`` through ``torch.cuda.mem_get_info``, what the
``nvml`` and ``torch`` probes report, this process's NVML use against torch's allocator
figures (the pool's own overhead, left out of the NVML probe's ``used``), and the time
of one probe reading (median of 200). cuda:0 gets a 256 MiB tensor first so that the
comparison is made with a context and an allocation in place; other GPUs are read by
NVML only (reading them through torch would create a context on each). Writes
``gpu_probes.{json,md}`` in ``--out`` (default bench/results/gpu). Without CUDA it
says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIB = 2**20
RESULTS = Path(__file__).parent / "results" / "gpu"


def median_seconds(read: Callable[[], object], repeats: int = 200) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare() -> dict[str, Any]:
    import pynvml
    import torch

    from modelpool.probes.gpu_ids import bare_uuid
    from modelpool.probes.nvml import NvmlProbe
    from modelpool.probes.torch_cuda import TorchProbe

    block = torch.empty(256 * MIB, dtype=torch.uint8, device="cuda:0")
    block.fill_(1)
    torch.cuda.synchronize()
    nvml, via_torch = NvmlProbe(), TorchProbe()
    devices = []
    for index in range(torch.cuda.device_count()):
        device = f"cuda:{index}"
        entry: dict[str, Any] = {"device": device}
        entry["torch_uuid"] = str(torch.cuda.get_device_properties(index).uuid)
        entry["nvml_uuid"] = nvml.uuid(device)
        entry["uuids_match"] = entry["nvml_uuid"] is not None and bare_uuid(
            entry["nvml_uuid"]
        ) == bare_uuid(entry["torch_uuid"])
        if entry["nvml_uuid"] is not None:
            handle = pynvml.nvmlDeviceGetHandleByUUID(entry["nvml_uuid"])
            info = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
            entry["nvml_v2"] = {
                "total": info.total, "reserved": info.reserved, "used": info.used,
                "free": info.free, "used_minus_reserved": info.used - info.reserved,
            }  # fmt: skip
        reading = nvml.read(device)
        entry["nvml_probe"] = None if reading is None else {"total": reading.total,
                                                            "used": reading.used}  # fmt: skip
        entry["nvml_read_seconds"] = median_seconds(lambda d=device: nvml.read(d))  # type: ignore[misc]
        usage = nvml.process_usage(device)
        entry["this_process_nvml_bytes"] = usage.get(os.getpid())
        if via_torch.in_use(index):
            free, total = torch.cuda.mem_get_info(index)
            entry["mem_get_info"] = {"free": free, "total": total, "used": total - free}
            reading = via_torch.read(device)
            entry["torch_probe"] = None if reading is None else {"total": reading.total,
                                                                 "used": reading.used}  # fmt: skip
            entry["torch_read_seconds"] = median_seconds(lambda d=device: via_torch.read(d))  # type: ignore[misc]
            entry["torch_allocated"] = torch.cuda.memory_allocated(index)
            entry["torch_reserved"] = torch.cuda.memory_reserved(index)
            if "nvml_v2" in entry:
                entry["free_difference_nvml_minus_cuda"] = entry["nvml_v2"]["free"] - free
        else:
            entry["torch_probe"] = "not read: no memory of this process here (no context made)"
        devices.append(entry)
    del block
    torch.cuda.empty_cache()
    return {
        "env": {k: os.environ.get(k) for k in ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES")},
        "driver": pynvml.nvmlSystemGetDriverVersion(),
        "torch": torch.__version__,
        "devices": devices,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        "# NVML against torch",
        "",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`  ",
        f"Driver {result['driver']}, torch {result['torch']}; env {result['env']}.",
        "",
    ]
    for entry in result["devices"]:
        lines += [f"## {entry['device']}", ""]
        lines += [f"- {key}: {value}" for key, value in entry.items() if key != "device"]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu_probes.*")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_probes: skipped: CUDA is not available on this machine")
        return
    result = compare()
    text = report(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_probes.md").write_text(text + "\n")
    (args.out / "gpu_probes.json").write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
