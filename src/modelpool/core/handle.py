"""Handle: a loaded model as its backend returned it, and ``HOST``, the warm tier's device.

Apart from the ports so that leases (which carry a handle) and the ports (whose
``Effects`` speak of leases) do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelpool.core.upstream import UpstreamAccess
from modelpool.types import Bytes, DeviceId, ModelId


@dataclass(slots=True)
class Handle:
    """A loaded model as its backend returned it."""

    model_id: ModelId
    device: DeviceId
    endpoint: str | None = None
    """Base URL of an OpenAI-compatible server (``http://127.0.0.1:PORT/v1``), if any."""
    obj: Any = None
    """The in-process object (a module, a pipeline), if any."""
    footprint: Bytes | None = None
    """Bytes the backend measured for this model, if it can tell."""
    native: Any = None
    """Backend-private state (a process, a port...)."""
    pids: tuple[int, ...] = ()
    """Processes serving the model (their trees are measured by the probe)."""
    devices: tuple[DeviceId, ...] = ()
    """Every device the model uses when it spans several (``device`` is the first);
    empty for a model on one device."""
    upstream: UpstreamAccess | None = None
    """How requests reach ``endpoint`` beyond its URL (a remote server's key, its name
    for the model, timeouts); None: plainly."""

    @property
    def all_devices(self) -> tuple[DeviceId, ...]:
        """The devices the model's memory is on: ``devices``, or just ``device``."""
        return self.devices or (self.device,)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the scheduler put a model: its devices (the first is the main one) and the
    share of its memory on each (summing to 1)."""

    devices: tuple[DeviceId, ...]
    split: tuple[float, ...]

    @property
    def device(self) -> DeviceId:
        return self.devices[0]

    @classmethod
    def one(cls, device: DeviceId) -> Placement:
        return cls((device,), (1.0,))


HOST: DeviceId = "host"
"""The device of a warm handle: host RAM, counted against the pool's ``warm_budget``."""
