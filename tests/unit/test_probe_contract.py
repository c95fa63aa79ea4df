"""The contract every memory probe keeps, run against every registered probe that can run.

From ``core.ports.MemoryProbe`` and ``MeasuresProcesses``: a probe is evidence, never
a reason to fail. ``read`` gives the device asked for with ``0 <= used <= total``, or
None for a device it does not see (never an error); ``process_bytes`` gives None when
it cannot tell (a gone pid, a device it does not see) and never raises. The probes
that need a GPU library (``nvml``; ``torch`` with CUDA) run here only as far as they can:
without a GPU they must still answer None, not fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import psutil
import pytest

from modelpool.core.ports import MeasuresProcesses, MemoryProbe, MemoryReading
from modelpool.plugins import PROBES

GB = 10**9
NO_SUCH_PID = 2**22 + 12_345  # above Linux's pid_max default: never a live process
"""A pid no process has."""


def static() -> MemoryProbe:
    probe: MemoryProbe = PROBES.get("static")({"cpu": 8 * GB}, {"cpu": GB})
    return probe


def nvml() -> MemoryProbe:
    try:
        probe: MemoryProbe = PROBES.get("nvml")()
    except Exception as error:  # NVMLError_LibraryNotFound/DriverNotLoaded: no GPU here
        pytest.skip(f"NVML cannot start here: {error!r}")
    return probe


def torch_probe() -> MemoryProbe:
    pytest.importorskip("torch")
    probe: MemoryProbe = PROBES.get("torch")()
    return probe


MAKERS: dict[str, Callable[[], MemoryProbe]] = {
    "static": static,
    "system": lambda: PROBES.get("system")(),
    "auto": lambda: PROBES.get("auto")(devices=["cpu"]),
    "nvml": nvml,
    "torch": torch_probe,
}
SEES_CPU = {"static", "system", "auto"}
per_probe = pytest.mark.parametrize("name", sorted(MAKERS))


def test_every_registered_probe_is_exercised() -> None:
    assert set(PROBES.names()) == set(MAKERS)


@per_probe
def test_a_reading_is_of_the_device_asked_and_within_its_total(name: str) -> None:
    probe = MAKERS[name]()
    assert probe.name
    for device in ("cpu", "cuda:0"):
        reading = probe.read(device)
        if reading is None:
            assert not (device == "cpu" and name in SEES_CPU), f"{name} must see the cpu"
            continue
        assert isinstance(reading, MemoryReading)
        assert reading.device == device
        assert 0 <= reading.used <= reading.total
        assert reading.free == reading.total - reading.used
        assert probe.read(device) is not None  # and again: one reading is no accident


@per_probe
@pytest.mark.parametrize("device", ["cuda:99", "tpu:0", "host", "cpu:7"])
def test_a_device_it_does_not_see_reads_as_none(name: str, device: str) -> None:
    assert MAKERS[name]().read(device) is None


@per_probe
def test_process_bytes_is_none_when_it_cannot_tell_and_never_raises(name: str) -> None:
    probe = MAKERS[name]()
    if not isinstance(probe, MeasuresProcesses):
        pytest.skip(f"probe {name!r} does not measure processes")
    assert not psutil.pid_exists(NO_SUCH_PID)
    assert probe.process_bytes("cpu", [NO_SUCH_PID]) in (None, 0)
    assert probe.process_bytes("cuda:99", [os.getpid()]) is None
    mine = probe.process_bytes("cpu", [os.getpid()])
    if name in SEES_CPU:  # it reads host RAM: this test process holds some
        assert mine is not None
        assert mine > 0
