"""The optional capabilities of each shipped backend and probe, as the pool sees them.

The pool asks ``isinstance(backend, WatchesExit)`` and so on (runtime-checkable
protocols in ``core/ports.py``); a capability renamed or dropped in a backend would
silently stop being used, so each one is listed here.
"""

from __future__ import annotations

import pytest

from modelpool.core.ports import (
    Backend,
    Estimating,
    KeepsLogs,
    KeepsState,
    MeasuresProcesses,
    OffloadsSome,
    Prepares,
    SpansDevices,
    WarmCapable,
    WatchesExit,
)
from modelpool.plugins import BACKENDS, PROBES

CAPABILITIES = {
    "estimate": Estimating,
    "watch exit": WatchesExit,
    "state dir": KeepsState,
    "logs": KeepsLogs,
    "warm tier": WarmCapable,
    "warm tier per model": OffloadsSome,
    "prepare": Prepares,
    "spans devices": SpansDevices,
}
EXPECTED_BACKENDS = {
    # A process model has a warm tier when its options declare sleep and wake (vLLM) or
    # keep_file_cached; llamacpp's models keep their GGUF cached unless told not to.
    "process": {
        "watch exit",
        "state dir",
        "logs",
        "warm tier",
        "warm tier per model",
        "spans devices",
    },
    "llamacpp": {
        "estimate",
        "watch exit",
        "state dir",
        "logs",
        "warm tier",
        "warm tier per model",
        "spans devices",
    },
    "torch": {"estimate", "warm tier", "prepare"},
    "callable": set(),
    "fake": {"estimate", "watch exit", "warm tier", "spans devices"},
    # Its estimate is 0 (it books nothing); its health watch is the crash watch.
    "remote": {"estimate", "watch exit"},
}
EXPECTED_PROBES = {"nvml": True, "system": True, "auto": True, "static": False, "torch": False}


@pytest.mark.parametrize("name", sorted(EXPECTED_BACKENDS))
def test_each_backend_offers_the_capabilities_the_pool_uses(name: str) -> None:
    if name == "torch":
        pytest.importorskip("torch")
    factory = BACKENDS.get(name)
    backend = factory()
    assert isinstance(backend, Backend)
    offered = {what for what, protocol in CAPABILITIES.items() if isinstance(backend, protocol)}
    assert offered == EXPECTED_BACKENDS[name]


def test_every_registered_backend_is_listed() -> None:
    assert set(BACKENDS.names()) == set(EXPECTED_BACKENDS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PROBES))
def test_probes_that_measure_processes_say_so(name: str) -> None:
    probe_class = PROBES.get(name)
    assert callable(getattr(probe_class, "read", None))  # MemoryProbe's one method
    assert issubclass(probe_class, MeasuresProcesses) is EXPECTED_PROBES[name]
