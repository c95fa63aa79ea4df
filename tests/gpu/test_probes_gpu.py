"""On a real GPU: NVML and torch agree about a device (run on a lent GPU machine)."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if importlib.util.find_spec("pynvml") is None:
    pytest.skip("nvidia-ml-py is not installed", allow_module_level=True)

from modelpool.probes.auto import AutoProbe  # noqa: E402
from modelpool.probes.nvml import NvmlProbe  # noqa: E402
from modelpool.probes.torch_cuda import TorchProbe  # noqa: E402

GB = 10**9


def test_nvml_and_torch_see_the_same_device() -> None:
    nvml, via_torch = NvmlProbe(), TorchProbe()
    a, b = nvml.read("cuda:0"), via_torch.read("cuda:0")
    assert a is not None
    assert b is not None
    assert a.total == pytest.approx(b.total, rel=0.02)
    assert abs(a.used - b.used) < 1 * GB  # both count every process's memory


def test_an_allocation_shows_up_in_nvml() -> None:
    nvml = NvmlProbe()
    before = nvml.read("cuda:0")
    block = torch.empty(2 * GB, dtype=torch.uint8, device="cuda:0")
    after = nvml.read("cuda:0")
    assert before is not None
    assert after is not None
    assert after.used - before.used >= 2 * GB * 0.95
    del block
    torch.cuda.empty_cache()


def test_auto_prefers_nvml_on_a_gpu_machine() -> None:
    assert AutoProbe().sources[0] == "nvml"
