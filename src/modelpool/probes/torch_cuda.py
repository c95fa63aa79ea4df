"""TorchProbe: CUDA memory as torch sees it (imported lazily): mem_get_info and peaks."""

from __future__ import annotations

import importlib
from typing import Any

from modelpool.core.ports import MemoryReading
from modelpool.probes.nvml import cuda_index
from modelpool.types import Bytes, DeviceId


class TorchProbe:
    """``cuda:N`` through ``torch.cuda``; None for other devices or without CUDA."""

    name = "torch"

    def __init__(self, torch: Any = None) -> None:
        self._torch = torch if torch is not None else importlib.import_module("torch")

    @property
    def available(self) -> bool:
        return bool(self._torch.cuda.is_available())

    def read(self, device: DeviceId) -> MemoryReading | None:
        index = cuda_index(device)
        if index is None or not self.available or index >= self._torch.cuda.device_count():
            return None
        free, total = self._torch.cuda.mem_get_info(index)
        return MemoryReading(device, int(total), int(total - free))

    def peak_allocated(self, device: DeviceId) -> Bytes:
        """Most bytes this process's allocator has held on ``device`` since the last reset."""
        index = cuda_index(device)
        if index is None or not self.available:
            return 0
        return int(self._torch.cuda.max_memory_allocated(index))
