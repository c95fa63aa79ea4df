"""TorchProbe: CUDA memory as torch sees it (imported lazily): mem_get_info and peaks.

``torch.cuda.mem_get_info`` is ``cudaMemGetInfo``, and a CUDA runtime call makes a
context on the device it asks about: hundreds of MB on every GPU read, even for a pool
whose models are all server processes. So this probe reads only devices this process
already uses (CUDA initialized here, memory reserved on that device by torch's
allocator) and says nothing (None) of the others: prefer ``nvml``, which reads any
device without a context (``auto`` does).
"""

from __future__ import annotations

import importlib
from typing import Any

from modelpool.core.ports import MemoryReading
from modelpool.probes.gpu_ids import cuda_index
from modelpool.types import Bytes, DeviceId


class TorchProbe:
    """``cuda:N`` through ``torch.cuda``; None for other devices, without CUDA, or for a
    GPU this process does not use yet."""

    name = "torch"

    def __init__(self, torch: Any = None) -> None:
        self._torch = torch if torch is not None else importlib.import_module("torch")

    @property
    def available(self) -> bool:
        # is_available counts devices (through NVML when it can) without a context.
        return bool(self._torch.cuda.is_available())

    def in_use(self, index: int) -> bool:
        """Whether this process already holds memory on CUDA device ``index``: only then is
        reading it free of a new context. ``is_initialized`` and the allocator's own
        figures make no CUDA call (torch.cuda.memory_stats returns {} before init)."""
        cuda = self._torch.cuda
        if not cuda.is_initialized() or index >= cuda.device_count():
            return False
        return int(cuda.memory_reserved(index)) > 0

    def read(self, device: DeviceId) -> MemoryReading | None:
        index = cuda_index(device)
        if index is None or not self.available or not self.in_use(index):
            return None
        free, total = self._torch.cuda.mem_get_info(index)
        return MemoryReading(device, int(total), int(total - free))

    def peak_allocated(self, device: DeviceId) -> Bytes:
        """Most bytes this process's allocator has held on ``device`` since the last reset."""
        index = cuda_index(device)
        if index is None or not self.in_use(index):
            return 0
        return int(self._torch.cuda.max_memory_allocated(index))
