"""NvmlProbe: NVIDIA GPU memory through NVML (package nvidia-ml-py, imported lazily)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

from modelpool.core.ports import MemoryReading
from modelpool.types import Bytes, DeviceId

_CUDA = re.compile(r"^cuda:(\d+)$")


def cuda_index(device: DeviceId) -> int | None:
    """``3`` for ``"cuda:3"``; None for any other device."""
    match = _CUDA.match(device)
    return int(match.group(1)) if match else None


class NvmlProbe:
    """Whole-device total/used per ``cuda:N``, and per-process use where NVML reports it.

    NVML counts what every process holds (other users, the CUDA context), which is what
    decides whether the next model fits; torch's allocator sees only its own process.
    """

    name = "nvml"

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml if nvml is not None else importlib.import_module("pynvml")
        self._nvml.nvmlInit()
        self._count = int(self._nvml.nvmlDeviceGetCount())

    @property
    def device_count(self) -> int:
        return self._count

    def _handle(self, device: DeviceId) -> Any:
        index = cuda_index(device)
        if index is None or index >= self._count:
            return None
        return self._nvml.nvmlDeviceGetHandleByIndex(index)

    def read(self, device: DeviceId) -> MemoryReading | None:
        handle = self._handle(device)
        if handle is None:
            return None
        info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
        return MemoryReading(device, int(info.total), int(info.used))

    def process_usage(self, device: DeviceId) -> dict[int, Bytes]:
        """Bytes each process holds on ``device`` ({} where NVML cannot tell)."""
        handle = self._handle(device)
        if handle is None:
            return {}
        usage: dict[int, Bytes] = {}
        for process in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            used = process.usedGpuMemory
            if used is not None:  # None when the driver hides it (e.g. in containers)
                usage[int(process.pid)] = usage.get(int(process.pid), 0) + int(used)
        return usage

    def process_bytes(self, device: DeviceId, pids: Iterable[int]) -> Bytes | None:
        """GPU memory held on ``device`` by ``pids`` and their children; None where NVML
        does not report per-process use."""
        usage = self.process_usage(device)
        if not usage:
            return None
        tree = _with_children(pids)
        return sum(used for pid, used in usage.items() if pid in tree)

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def _with_children(pids: Iterable[int]) -> set[int]:
    """``pids`` and every descendant (a server may run its model in a child process)."""
    tree = set(pids)
    try:
        import psutil
    except ImportError:
        return tree
    for pid in list(tree):
        try:
            tree.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return tree
