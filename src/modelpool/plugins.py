"""Name -> factory registries for eviction policies and backends.

Built-ins are listed as ``"module:attribute"`` strings, exactly like entry points, so
looking one up imports only that module; third-party packages add their own through
the entry-point groups ``modelpool.policies`` and ``modelpool.backends``; code can
``register()`` at run time. Later sources win: built-in < entry point < register().
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from modelpool.errors import PluginNotFound

Factory = Callable[..., Any]
Discover = Callable[[str], Iterable[EntryPoint]]


def _discover(group: str) -> Iterable[EntryPoint]:
    return entry_points(group=group)


def _load_reference(reference: str) -> Factory:
    module_name, _, attribute = reference.partition(":")
    obj: Factory = getattr(importlib.import_module(module_name), attribute)
    return obj


class Registry:
    """Factories of one kind of plug-in, found by name."""

    def __init__(
        self, kind: str, group: str, builtins: Mapping[str, str], discover: Discover = _discover
    ) -> None:
        self.kind = kind
        self.group = group
        self._references: dict[str, str] = dict(builtins)
        self._loaded: dict[str, Factory] = {}
        self._discover = discover
        self._discovered = False

    def register(self, name: str, factory: Factory) -> None:
        """Make ``factory`` available under ``name`` (replacing any earlier one)."""
        self._ensure_discovered()
        self._references.pop(name, None)
        self._loaded[name] = factory

    def get(self, name: str) -> Factory:
        """The factory registered as ``name``; ``PluginNotFound`` lists the known ones."""
        self._ensure_discovered()
        if name in self._loaded:
            return self._loaded[name]
        reference = self._references.get(name)
        if reference is None:
            raise PluginNotFound(self.kind, name, self.names())
        factory = _load_reference(reference)
        self._loaded[name] = factory
        return factory

    def names(self) -> list[str]:
        self._ensure_discovered()
        return sorted({*self._references, *self._loaded})

    def _ensure_discovered(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for entry in self._discover(self.group):
            self._loaded.pop(entry.name, None)
            self._references[entry.name] = entry.value


POLICIES = Registry(
    "eviction policy",
    "modelpool.policies",
    {
        "lru": "modelpool.policies.lru:LRUPolicy",
        "lfu": "modelpool.policies.lfu:LFUPolicy",
        "fifo": "modelpool.policies.fifo:FIFOPolicy",
        "priority": "modelpool.policies.priority:PriorityPolicy",
        "specialization": "modelpool.policies.specialization:SpecializationPolicy",
        "memory_pressure": "modelpool.policies.memory_pressure:MemoryPressurePolicy",
        "hybrid": "modelpool.policies.hybrid:HybridPolicy",
        "cost_aware": "modelpool.policies.cost_aware:CostAwarePolicy",
        "recency_cost": "modelpool.policies.recency_cost:RecencyCostPolicy",
    },
)

BACKENDS = Registry(
    "backend",
    "modelpool.backends",
    {
        "fake": "modelpool.backends.fake:FakeBackend",
        "process": "modelpool.backends.process:ProcessBackend",
        "llamacpp": "modelpool.backends.llamacpp:LlamaCppBackend",
        "callable": "modelpool.backends.callable:CallableBackend",
        "torch": "modelpool.backends.torch_models:TorchBackend",
        "remote": "modelpool.backends.remote:RemoteBackend",
    },
)

PROBES = Registry(
    "memory probe",
    "modelpool.probes",
    {
        "static": "modelpool.probes.static:StaticProbe",
        "system": "modelpool.probes.system:SystemProbe",
        "nvml": "modelpool.probes.nvml:NvmlProbe",
        "torch": "modelpool.probes.torch_cuda:TorchProbe",
        "auto": "modelpool.probes.auto:AutoProbe",
    },
)


@dataclass(frozen=True, slots=True)
class Plugins:
    """The registries a config's names are checked against. Validation that needs a
    plug-in's code (a backend's ``options_model``, a strategy's options) uses the
    registries it is handed this way, so that reading a config imports no plug-in
    unless its caller (the wiring: ``bootstrap``, ``Config.load``) asks for it."""

    backends: Registry = BACKENDS
    policies: Registry = POLICIES


PLUGINS = Plugins()
"""The process-wide registries."""
