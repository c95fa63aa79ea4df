"""AutoProbe: the best evidence available here, per device.

GPUs are read through NVML when it initializes, else through torch when CUDA is
there; host RAM (``cpu``) through psutil. Whatever cannot be imported is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from modelpool.core.ports import MemoryProbe, MemoryReading
from modelpool.types import Bytes, DeviceId

log = logging.getLogger("modelpool.probes")


def _gpu_probe() -> MemoryProbe | None:
    try:
        from modelpool.probes.nvml import NvmlProbe

        nvml = NvmlProbe()
        if nvml.device_count:
            return nvml
    except Exception as error:  # no library, no driver, no device: try the next source
        log.debug("NVML unavailable: %s", error)
    try:
        from modelpool.probes.torch_cuda import TorchProbe

        torch = TorchProbe()
        if torch.available:
            return torch
    except ImportError as error:
        log.debug("torch unavailable: %s", error)
    return None


class AutoProbe:
    """Asks each probe it found in turn; the first reading wins."""

    name = "auto"

    def __init__(
        self, probes: list[MemoryProbe] | None = None, devices: Iterable[DeviceId] | None = None
    ) -> None:
        """``devices``: the devices that will be read; with no GPU among them, no GPU
        library is loaded (importing torch only to learn that takes seconds)."""
        if probes is None:
            from modelpool.probes.system import SystemProbe

            wants_gpu = devices is None or any(d.startswith("cuda") for d in devices)
            gpu = _gpu_probe() if wants_gpu else None
            probes = [gpu, SystemProbe()] if gpu is not None else [SystemProbe()]
        self.probes = probes

    @property
    def sources(self) -> list[str]:
        return [probe.name for probe in self.probes]

    def process_bytes(self, device: DeviceId, pids: Iterable[int]) -> Bytes | None:
        pids = list(pids)
        for probe in self.probes:
            measure = getattr(probe, "process_bytes", None)
            result = measure(device, pids) if measure is not None else None
            if result is not None:
                return int(result)
        return None

    def read(self, device: DeviceId) -> MemoryReading | None:
        for probe in self.probes:
            reading = probe.read(device)
            if reading is not None:
                return reading
        return None
