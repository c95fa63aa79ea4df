"""modelpool: run more AI models than fit in your GPU.

The public API is exactly ``__all__`` (a test checks it). Its names are imported on
first use (PEP 562), so that ``import modelpool.config`` loads the config and nothing
else: no pool, no backend, no policy. Nothing here imports an optional extra either:
torch, NVML, HTTP and llama.cpp live in leaf modules, loaded lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers and readers
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
        ModelQueueFull,
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

_WHERE: dict[str, str] = {
    "FakeBackend": "modelpool.backends.fake",
    "Config": "modelpool.config",
    "ModelSpec": "modelpool.config",
    "EventKind": "modelpool.core.events",
    "PoolEvent": "modelpool.core.events",
    "Lease": "modelpool.core.lease",
    "ModelPool": "modelpool.core.pool",
    "Backend": "modelpool.core.ports",
    "Candidate": "modelpool.core.ports",
    "EvictionContext": "modelpool.core.ports",
    "EvictionPolicy": "modelpool.core.ports",
    "Handle": "modelpool.core.ports",
    "MemoryProbe": "modelpool.core.ports",
    "MemoryReading": "modelpool.core.ports",
    "ModelState": "modelpool.core.states",
    "CapacityError": "modelpool.errors",
    "CircuitOpen": "modelpool.errors",
    "ConfigError": "modelpool.errors",
    "DoesNotFit": "modelpool.errors",
    "InsufficientMemory": "modelpool.errors",
    "LoadFailed": "modelpool.errors",
    "ModelPoolError": "modelpool.errors",
    "PluginNotFound": "modelpool.errors",
    "PoolClosed": "modelpool.errors",
    "ModelQueueFull": "modelpool.errors",
    "QueueFull": "modelpool.errors",
    "SwitchRefused": "modelpool.errors",
    "UnknownModel": "modelpool.errors",
    "UnknownOperation": "modelpool.errors",
    "UnknownVersion": "modelpool.errors",
    "WaitTimeout": "modelpool.errors",
    "HealthMonitor": "modelpool.monitor.health",
    "Thresholds": "modelpool.monitor.health",
    "BACKENDS": "modelpool.plugins",
    "POLICIES": "modelpool.plugins",
    "StaticProbe": "modelpool.probes.static",
    "RolloutManager": "modelpool.rollout",
    "Strategy": "modelpool.rollout",
    "SwitchResult": "modelpool.rollout",
    "ModelSwitchingStrategy": "modelpool.types",
    "format_size": "modelpool.units",
    "parse_size": "modelpool.units",
}
"""Each public name and the module it comes from."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'modelpool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "ModelQueueFull",
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
