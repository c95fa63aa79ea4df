"""modelpool: run more AI models than fit in your GPU.

The public API is exactly ``__all__`` (a test checks it). Nothing here imports an
optional extra: torch, NVML, HTTP and llama.cpp live in leaf modules, loaded lazily.
"""

from modelpool.backends.fake import FakeBackend
from modelpool.config import Config, ModelSpec
from modelpool.core.events import EventKind, PoolEvent
from modelpool.core.lease import Lease
from modelpool.core.pool import ModelPool
from modelpool.core.ports import (
    Backend,
    Candidate,
    EvictionContext,
    EvictionPolicy,
    Handle,
    MemoryProbe,
    MemoryReading,
)
from modelpool.core.states import ModelState
from modelpool.errors import (
    CapacityError,
    CircuitOpen,
    ConfigError,
    DoesNotFit,
    InsufficientMemory,
    LoadFailed,
    ModelPoolError,
    PluginNotFound,
    PoolClosed,
    QueueFull,
    SwitchRefused,
    UnknownModel,
    UnknownOperation,
    UnknownVersion,
    WaitTimeout,
)
from modelpool.monitor.health import HealthMonitor, Thresholds
from modelpool.plugins import BACKENDS, POLICIES
from modelpool.probes.static import StaticProbe
from modelpool.rollout import RolloutManager, Strategy, SwitchResult
from modelpool.types import ModelSwitchingStrategy
from modelpool.units import format_size, parse_size

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "POLICIES",
    "Backend",
    "Candidate",
    "CapacityError",
    "CircuitOpen",
    "Config",
    "ConfigError",
    "DoesNotFit",
    "EventKind",
    "EvictionContext",
    "EvictionPolicy",
    "FakeBackend",
    "HealthMonitor",
    "Handle",
    "InsufficientMemory",
    "Lease",
    "LoadFailed",
    "MemoryProbe",
    "MemoryReading",
    "ModelPool",
    "ModelPoolError",
    "ModelSpec",
    "ModelState",
    "ModelSwitchingStrategy",
    "PluginNotFound",
    "PoolClosed",
    "PoolEvent",
    "QueueFull",
    "RolloutManager",
    "StaticProbe",
    "Strategy",
    "SwitchRefused",
    "SwitchResult",
    "Thresholds",
    "UnknownModel",
    "UnknownOperation",
    "UnknownVersion",
    "WaitTimeout",
    "__version__",
    "format_size",
    "parse_size",
]
