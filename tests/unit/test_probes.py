"""Memory probes: real host RAM through psutil, NVML and torch through fakes of their
libraries (no GPU here), and the automatic choice."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from modelpool.plugins import PROBES
from modelpool.probes.auto import AutoProbe
from modelpool.probes.nvml import NvmlProbe, cuda_index
from modelpool.probes.static import StaticProbe
from modelpool.probes.system import SystemProbe
from modelpool.probes.torch_cuda import TorchProbe

MB = 10**6


def test_system_probe_reads_host_ram() -> None:
    reading = SystemProbe().read("cpu")
    assert reading is not None
    assert reading.total == psutil.virtual_memory().total
    assert 0 < reading.used < reading.total
    assert reading.free == reading.total - reading.used
    assert SystemProbe().read("cuda:0") is None


def test_system_probe_counts_a_process_tree() -> None:
    probe = SystemProbe()
    # A child that holds 200 MB and says so, so its RSS is there when we measure.
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; b = b'x' * 200_000_000; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        alone = probe.process_rss([child.pid])
        assert alone > 190 * MB
        tree = probe.process_rss([psutil.Process().pid])  # we are its parent
        assert tree > alone  # our tree counts the child and us
        assert probe.process_rss([child.pid, child.pid]) == alone
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
        assert child.stdout is not None
        child.stdout.close()
    assert probe.process_rss([child.pid]) == 0  # gone: counts nothing


def test_nvml_probe_reads_each_gpu_and_its_processes() -> None:
    from gpu_fakes import GB, FakeGpu, FakeNvml

    gpu = FakeGpu("GPU-0", total=80 * GB, reserved=0, processes={11: 5 * GB, 12: None},
                  other_used=7 * GB)  # fmt: skip
    library = FakeNvml([gpu])
    probe = NvmlProbe(nvml=library, environ={}, torch_cuda=lambda: None, pid=1)
    reading = probe.read("cuda:0")
    assert reading is not None
    assert (reading.total, reading.used) == (80 * GB, 12 * GB)
    assert probe.read("cuda:2") is None
    assert probe.read("cpu") is None
    assert probe.process_usage("cuda:0") == {11: 5 * GB}  # hidden usage is left out
    probe.close()
    assert library.calls == ["init", "shutdown"]


def test_cuda_index() -> None:
    assert cuda_index("cuda:3") == 3
    assert cuda_index("cuda") is None
    assert cuda_index("cpu") is None


def test_torch_probe_reads_mem_get_info_of_a_device_in_use() -> None:
    from gpu_fakes import CONTEXT_BYTES, GB, FakeCuda, FakeGpu, fake_torch

    gpu = FakeGpu("GPU-0", total=80 * GB, reserved=0, other_used=46 * GB)
    cuda = FakeCuda([gpu], pid=1)
    cuda.allocate(0, 7 * GB - CONTEXT_BYTES)
    probe = TorchProbe(torch=fake_torch(cuda))
    reading = probe.read("cuda:0")
    assert reading is not None
    assert (reading.total, reading.used) == (80 * GB, 53 * GB)
    assert probe.read("cuda:1") is None
    assert probe.peak_allocated("cuda:0") == 7 * GB - CONTEXT_BYTES


def test_auto_probe_asks_each_source_in_turn() -> None:
    gpu = StaticProbe({"cuda:0": 80 * 10**9}, used={"cuda:0": 10**9})
    probe = AutoProbe([gpu, SystemProbe()])
    assert probe.sources == ["static", "system"]
    reading = probe.read("cuda:0")
    assert reading is not None
    assert reading.used == 10**9
    assert probe.read("cpu") is not None
    assert probe.read("npu:0") is None


def test_auto_probe_on_this_machine_reads_ram() -> None:
    probe = AutoProbe()
    assert probe.sources[-1] == "system"
    assert probe.read("cpu") is not None


def test_auto_probe_for_cpu_budgets_loads_no_gpu_library() -> None:
    assert AutoProbe(devices=["cpu"]).sources == ["system"]


def test_probes_are_found_by_name() -> None:
    assert {"static", "system", "nvml", "torch", "auto"} <= set(PROBES.names())
    assert PROBES.get("system") is SystemProbe
    with pytest.raises(Exception, match="did you mean 'nvml'"):
        PROBES.get("nvlm")
