"""SystemProbe: host RAM through psutil, and the resident memory of given processes."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from modelpool.core.ports import MemoryReading
from modelpool.types import Bytes, DeviceId


class SystemProbe:
    """Reads the ``cpu`` device (RAM: used = total - available); no other device."""

    name = "system"

    def __init__(self, psutil: Any = None) -> None:
        # Injected in tests; imported here so `import modelpool` never needs psutil.
        self._psutil = psutil if psutil is not None else importlib.import_module("psutil")

    def read(self, device: DeviceId) -> MemoryReading | None:
        if device != "cpu":
            return None
        memory = self._psutil.virtual_memory()
        return MemoryReading(device, int(memory.total), int(memory.total - memory.available))

    def process_bytes(self, device: DeviceId, pids: Iterable[int]) -> Bytes | None:
        """Host RAM held by ``pids``' process trees; None for any device but ``cpu``."""
        return self.process_rss(pids) if device == "cpu" else None

    def process_rss(self, pids: Iterable[int]) -> Bytes:
        """Resident bytes of ``pids`` and all their descendants (a backend's process tree);
        processes that are gone count as 0."""
        seen: set[int] = set()
        total = 0
        for pid in pids:
            try:
                root = self._psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except self._psutil.NoSuchProcess:
                continue
            for process in tree:
                if process.pid in seen:
                    continue
                seen.add(process.pid)
                try:
                    total += int(process.memory_info().rss)
                except self._psutil.NoSuchProcess:
                    continue
        return total
