"""StaticProbe: configured memory figures, for CPU-only runs, tests and ``--dry-run``."""

from __future__ import annotations

from collections.abc import Mapping

from modelpool.core.ports import MemoryReading
from modelpool.types import Bytes, DeviceId


class StaticProbe:
    """Reports the totals it was given and whatever ``set_used`` last scripted."""

    name = "static"

    def __init__(
        self, totals: Mapping[DeviceId, Bytes], used: Mapping[DeviceId, Bytes] | None = None
    ) -> None:
        self._totals = dict(totals)
        self._used = dict(used or {})

    def set_used(self, device: DeviceId, used: Bytes) -> None:
        """Script what the device reports as used (e.g. memory held by other processes)."""
        if device not in self._totals:
            raise KeyError(f"StaticProbe has no device {device!r}")
        self._used[device] = used

    def read(self, device: DeviceId) -> MemoryReading | None:
        total = self._totals.get(device)
        if total is None:
            return None
        return MemoryReading(device, total, self._used.get(device, 0))
