"""Handle: a loaded model as its backend returned it, and ``HOST``, the warm tier's device.

Apart from the ports so that leases (which carry a handle) and the ports (whose
``Effects`` speak of leases) do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


HOST: DeviceId = "host"
"""The device of a warm handle: host RAM, counted against the pool's ``warm_budget``."""
