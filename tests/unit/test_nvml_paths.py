"""The NVML probe against a fake of pynvml that behaves as nvidia-ml-py 13.x does
(see gpu_fakes): devices found by UUID, MIG, errors, unknown per-process use, and the
pool's own overhead."""

from __future__ import annotations

import logging
import os

import pytest
from gpu_fakes import CONTEXT_BYTES, GB, MB, FakeCuda, FakeGpu, FakeNvml, instance

from modelpool.probes.gpu_ids import parse_visible_devices
from modelpool.probes.nvml import NvmlProbe

POOL = 4242
"""The pool's own pid in these tests."""

# Two different GPUs: NVML (PCI order) has the A100 first, CUDA (fastest first) the H100.
A100 = FakeGpu("GPU-aaaaaaaa-0000-0000-0000-000000000001", "00000000:17:00.0",
               name="NVIDIA A100-SXM4-40GB", total=40 * GB, other_used=1 * GB)  # fmt: skip
H100 = FakeGpu("GPU-bbbbbbbb-0000-0000-0000-000000000002", "00000000:65:00.0",
               total=80 * GB, other_used=30 * GB)  # fmt: skip


def gpus() -> tuple[FakeGpu, FakeGpu]:
    """Fresh copies of the two GPUs (tests change their processes)."""
    return (
        FakeGpu(A100.uuid, A100.pci_bus_id, A100.name, A100.total, other_used=A100.other_used),
        FakeGpu(H100.uuid, H100.pci_bus_id, H100.name, H100.total, other_used=H100.other_used),
    )


def probe(
    nvml: FakeNvml, env: dict[str, str] | None = None, cuda: FakeCuda | None = None
) -> NvmlProbe:
    return NvmlProbe(
        nvml,
        environ=env or {},
        torch_cuda=lambda: cuda if cuda and cuda.initialized else None,
        pid=POOL,
    )


# --- point 2: which GPU is cuda:N -------------------------------------------------------


def test_parse_visible_devices_as_torch_does() -> None:
    assert parse_visible_devices(None) is None
    assert parse_visible_devices("1,0") == ["1", "0"]
    assert parse_visible_devices("1gpu2,2ampere") == ["1", "2"]  # strtoul-like
    assert parse_visible_devices("0,-1,2") == ["0"]  # a negative entry ends the list
    assert parse_visible_devices("0,0") == []  # a repeat hides every device
    assert parse_visible_devices("GPU-ab,GPU-cd,0") == ["GPU-ab", "GPU-cd"]
    assert parse_visible_devices("MIG-x") == ["MIG-x"]
    assert parse_visible_devices("") == []


def test_without_cuda_here_cuda_n_is_the_nth_gpu_in_pci_order() -> None:
    a100, h100 = gpus()
    nvml = FakeNvml([h100, a100])
    readings = probe(nvml)
    first, second = readings.read("cuda:0"), readings.read("cuda:1")
    assert first is not None
    assert second is not None
    assert first.total == a100.total - a100.reserved  # allocatable: reserved left out
    assert first.used == 1 * GB
    assert second.used == 30 * GB
    assert readings.read("cuda:2") is None


def test_cuda_in_this_process_is_followed_by_uuid_not_by_index() -> None:
    a100, h100 = gpus()
    nvml = FakeNvml([a100, h100])
    # CUDA's default order here is fastest first: its device 0 is the H100, NVML's 0 the A100.
    cuda = FakeCuda([h100, a100], POOL, initialized=True)
    readings = probe(nvml, cuda=cuda)
    assert readings.uuid("cuda:0") == h100.uuid
    reading = readings.read("cuda:0")
    assert reading is not None
    assert reading.total == h100.total - h100.reserved
    assert reading.used == 30 * GB


def test_visible_devices_by_uuid_and_by_ordinal() -> None:
    a100, h100 = gpus()
    nvml = FakeNvml([a100, h100])
    by_uuid = probe(nvml, {"CUDA_VISIBLE_DEVICES": h100.uuid}).read("cuda:0")
    assert by_uuid is not None
    assert by_uuid.used == 30 * GB
    by_ordinal = probe(nvml, {"CUDA_VISIBLE_DEVICES": "1"}).read("cuda:0")
    assert by_ordinal is not None
    assert by_ordinal.used == 30 * GB
    assert probe(nvml, {"CUDA_VISIBLE_DEVICES": "1"}).read("cuda:1") is None  # not visible
    short = probe(nvml, {"CUDA_VISIBLE_DEVICES": "GPU-bbbbbbbb"}).read("cuda:0")
    assert short is not None
    assert short.used == 30 * GB
    assert probe(nvml, {"CUDA_VISIBLE_DEVICES": "GPU-ffff"}).read("cuda:0") is None


def test_mig_instance_is_read_and_its_parent_is_not() -> None:
    slice_ = instance("MIG-cccccccc-0000-0000-0000-000000000003", 10 * GB, {77: 2 * GB})
    parent = FakeGpu("GPU-dddddddd-0000-0000-0000-000000000004", mig_enabled=True,
                     instances=[slice_])  # fmt: skip
    nvml = FakeNvml([parent])
    # NVML index 0 is the parent: its figures are not the instance CUDA runs on.
    assert probe(nvml).read("cuda:0") is None
    reading = probe(nvml, {"CUDA_VISIBLE_DEVICES": slice_.uuid}).read("cuda:0")
    assert reading is not None
    assert (reading.total, reading.used) == (10 * GB, 2 * GB)
    assert (
        probe(nvml, {"CUDA_VISIBLE_DEVICES": slice_.uuid}).process_bytes("cuda:0", [77]) == 2 * GB
    )
    # torch on a MIG instance reports the instance's UUID; NVML writes it with MIG-.
    cuda = FakeCuda([slice_], POOL, initialized=True)
    via_torch = probe(nvml, cuda=cuda).read("cuda:0")
    assert via_torch is not None
    assert via_torch.total == 10 * GB


# --- point 3: per-process use that NVML does not show is unknown -----------------------


def test_pids_nvml_does_not_list_are_unknown_not_zero() -> None:
    a100, _ = gpus()
    a100.processes = {900_001: 3 * GB}  # a host pid, as NVML reports inside a container
    readings = probe(FakeNvml([a100]))
    assert readings.process_bytes("cuda:0", [os.getpid() + 10**6]) is None
    a100.processes = {}
    assert readings.process_bytes("cuda:0", [12]) is None
    a100.processes = {12: None}  # NVML_VALUE_NOT_AVAILABLE
    assert readings.process_bytes("cuda:0", [12]) is None
    a100.processes = {12: 3 * GB, 13: 1 * GB}
    assert readings.process_bytes("cuda:0", [12]) == 3 * GB


# --- point 4: NVML errors make a reading unknown ----------------------------------------


def test_old_driver_without_v3_process_query_falls_back_to_v2() -> None:
    a100, _ = gpus()
    a100.processes = {12: 3 * GB}
    readings = probe(FakeNvml([a100], has_v3_processes=False, has_memory_v2=False))
    assert readings.process_bytes("cuda:0", [12]) == 3 * GB
    reading = readings.read("cuda:0")
    assert reading is not None
    assert reading.total == a100.total  # v1: no reserved figure
    assert reading.used == a100.reserved + 4 * GB  # v1: used includes reserved


def test_nvml_errors_make_readings_unknown(caplog: pytest.LogCaptureFixture) -> None:
    a100, _ = gpus()
    a100.processes = {12: 3 * GB}
    nvml = FakeNvml([a100])
    readings = probe(nvml)
    # A mismatch error (a plain Exception) from both process queries: unknown.
    nvml.has_v3_processes = False
    nvml.nvmlDeviceGetComputeRunningProcesses_v2 = _raise_mismatch  # type: ignore[method-assign]
    assert readings.process_bytes("cuda:0", [12]) is None
    assert readings.read("cuda:0") is not None  # memory still reads
    a100.lost = True
    with caplog.at_level(logging.WARNING, "modelpool.probes"):
        assert readings.read("cuda:0") is None
        assert readings.read("cuda:0") is None
    assert readings.process_bytes("cuda:0", [12]) is None
    assert readings.process_usage("cuda:0") == {}
    lost = [r.getMessage() for r in caplog.records if "GPU is lost" in r.getMessage()]
    assert len([m for m in lost if "cannot be read" in m]) == 1  # once, not every tick


def test_mig_parent_without_privileges_is_unknown() -> None:
    parent = FakeGpu("GPU-dddddddd-0000-0000-0000-000000000004", mig_enabled=True)
    readings = probe(FakeNvml([parent]), {"CUDA_VISIBLE_DEVICES": parent.uuid})
    assert readings.read("cuda:0") is None
    assert readings.process_bytes("cuda:0", [12]) is None


def _raise_mismatch(handle: object) -> list[object]:
    import pynvml

    raise pynvml.NVMLLibraryMismatchError("Unversioned function called")


# --- point 5: the pool's own overhead is the pool's -------------------------------------


def test_the_pools_context_and_cache_are_not_counted_as_others() -> None:
    a100, _ = gpus()
    nvml = FakeNvml([a100])
    cuda = FakeCuda([a100], POOL)
    readings = probe(nvml, cuda=cuda)
    before = readings.read("cuda:0")
    assert before is not None
    # The pool loads a 4 GB model: context and 1 GB of cached blocks come with it.
    cuda.allocate(0, 4 * GB, cached=1 * GB)
    assert a100.processes[POOL] == CONTEXT_BYTES + 5 * GB  # what NVML lists for us
    after = readings.read("cuda:0")
    assert after is not None
    assert after.used - before.used == 4 * GB  # only the model's tensors
    # A neighbour's 2 GB still shows.
    a100.processes[31337] = 2 * GB
    neighbour = readings.read("cuda:0")
    assert neighbour is not None
    assert neighbour.used - after.used == 2 * GB


def test_own_use_without_torch_counts_as_overhead() -> None:
    a100, _ = gpus()
    a100.processes = {POOL: 700 * MB}  # some CUDA library of ours, no torch tensors
    reading = probe(FakeNvml([a100])).read("cuda:0")
    assert reading is not None
    assert reading.used == 1 * GB
