"""The torch backend's GPU paths on CPU torch, with torch.cuda faked where a GPU would
act (see gpu_fakes): unload frees what a holder keeps, footprints are the model's own
bytes, empty_cache after a conversion, the torch probe starts no context, the warm
tier's kept page-locked buffers, shared storages, plain tensor attributes, a failed
page-lock, and the deprecated pynvml package's warning (issue 15, points 1, 5-9)."""

from __future__ import annotations

import os
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from _pytest.config import parse_warning_filter  # noqa: E402
from gpu_fakes import GB, FakeCuda, FakeCudart, FakeGpu, fake_torch  # noqa: E402
from safetensors.torch import save_model  # noqa: E402
from torch import nn  # noqa: E402

from modelpool import ModelSpec  # noqa: E402
from modelpool.backends import torch_models, torch_weights  # noqa: E402
from modelpool.backends.torch_models import TorchBackend  # noqa: E402
from modelpool.backends.torch_weights import (  # noqa: E402
    PinnedPool,
    relocate,
    resident_bytes,
)
from modelpool.probes.torch_cuda import TorchProbe  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class Tied(nn.Module):
    """Two linear layers sharing a weight, a buffer, and a tensor kept as a plain
    attribute (as some models keep rotary tables or caches)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(8, 8)
        self.second = nn.Linear(8, 8, bias=False)
        self.second.weight = self.first.weight
        self.register_buffer("scale", torch.full((8,), 0.5))
        self.table = torch.arange(8.0)  # not registered: a plain attribute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.second(self.first(x)) * self.scale + self.table
        return out


def tied() -> Tied:
    torch.manual_seed(0)
    return Tied().eval()


def spec(path: Path, **options: Any) -> ModelSpec:
    return ModelSpec(
        id="tiny", backend="torch", path=str(path), factory="torch.nn:Linear",
        factory_kwargs={"in_features": 64, "out_features": 64}, device="cpu", **options,
    )  # fmt: skip


def linear_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "linear.safetensors"
    save_model(nn.Linear(64, 64), str(path))
    return path


# --- point 1: an unload frees the memory whoever holds the module -----------------------


async def test_unload_frees_the_weights_of_a_module_still_held(tmp_path: Path) -> None:
    backend = TorchBackend()
    handle = await backend.load(spec(linear_checkpoint(tmp_path)), "cpu")
    held = handle.obj  # a lease or a local variable that outlives the unload
    assert resident_bytes(held) == (64 * 64 + 64) * 4
    await backend.unload(handle)
    assert resident_bytes(held) == 0
    assert all(p.numel() == 0 for p in held.parameters())


def test_release_keeps_ties_and_clears_buffers_and_attributes() -> None:
    module = tied()
    torch_weights.release_tensors(module)
    assert module.second.weight is module.first.weight  # still one Parameter
    assert resident_bytes(module) == 0
    assert module.scale.numel() == 0
    assert module.table.numel() == 0


# --- point 6: a footprint is the model's own bytes ---------------------------------------


async def test_footprint_ignores_memory_other_moves_allocate_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grown = iter(range(0, 100 * GB, GB))  # another load on the device, allocating meanwhile
    monkeypatch.setattr(torch_weights, "allocated", lambda device: next(grown), raising=False)
    handle = await TorchBackend().load(spec(linear_checkpoint(tmp_path)), "cpu")
    assert handle.footprint == (64 * 64 + 64) * 4


def test_resident_bytes_counts_each_storage_once_and_plain_attributes() -> None:
    module = tied()
    weight, bias, scale, table = 8 * 8 * 4, 8 * 4, 8 * 4, 8 * 4
    assert resident_bytes(module) == weight + bias + scale + table


# --- point 5: a conversion on the GPU hands the allocator's cache back -------------------


@pytest.mark.parametrize(("dtype", "emptied"), [("float16", 1), (None, 0)])
def test_a_load_that_converts_on_the_gpu_empties_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: str | None, emptied: int
) -> None:
    cuda = FakeCuda([FakeGpu("GPU-0")], pid=1, initialized=True)
    monkeypatch.setattr(torch.cuda, "is_initialized", cuda.is_initialized)
    monkeypatch.setattr(torch.cuda, "empty_cache", cuda.empty_cache)
    # CPU torch cannot put tensors on cuda:0: the loader is asked for the GPU, builds on
    # the CPU, and what follows the load is what is checked.
    monkeypatch.setitem(torch_models._LOADERS, "safetensors", lambda state, device: tied())
    options = torch_models.TorchOptions(path=str(tmp_path), kind="safetensors",
                                        factory="torch.nn:Linear", dtype=dtype)  # fmt: skip
    state = torch_models.TorchModel(options, "safetensors", tmp_path)
    torch_models._load("tiny", state, "cuda:0")
    assert cuda.empty_cache_calls == emptied


# --- point 7: the torch probe starts no CUDA context -------------------------------------


def test_torch_probe_reads_only_devices_this_process_uses() -> None:
    gpus = [FakeGpu("GPU-0", other_used=3 * GB), FakeGpu("GPU-1", pci_bus_id="00000000:65:00.0")]
    cuda = FakeCuda(gpus, pid=1)
    probe = TorchProbe(torch=fake_torch(cuda))
    assert probe.read("cuda:0") is None  # CUDA not started here: nothing read
    assert probe.read("cuda:1") is None
    assert cuda.contexts == set()
    cuda.allocate(0, 1 * GB)  # the pool now has a model on cuda:0
    assert probe.read("cuda:0") is not None
    assert probe.read("cuda:1") is None  # still no context on the other GPU
    assert cuda.contexts == {0}


# --- point 8: page-locked buffers kept for reuse; the copy timed apart -------------------


def test_pinned_buffers_are_reused_within_what_was_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    cudart = FakeCudart()
    monkeypatch.setattr(torch_weights, "_cudart", lambda: cudart)
    pool = PinnedPool()
    module = tied()
    x = torch.randn(2, 8)
    with torch.inference_mode():
        expected = module(x)
    for _ in range(3):  # offload (page-locked), then "restore" (to pageable memory here)
        warm = relocate(module, "cpu", pin=True, pool=pool)
        assert warm.pinned
        assert warm.copy_seconds > 0
        back = relocate(module, "cpu", packed=warm, pool=pool)
        warm.release()
        assert back.intact()
    assert cudart.registrations == 1  # registered once, reused twice
    assert pool.reused == 2
    assert pool.idle_bytes == warm.nbytes  # kept: no more than was in use at once
    with torch.inference_mode():
        assert torch.equal(module(x), expected)
    pool.clear()
    assert cudart.registered == {}


def test_the_pool_keeps_no_more_than_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    cudart = FakeCudart()
    monkeypatch.setattr(torch_weights, "_cudart", lambda: cudart)
    pool = PinnedPool(limit=1024)
    small, large = pool.acquire(1024, pin=True), pool.acquire(4096, pin=True)
    pool.give_back(large)
    pool.give_back(small)
    assert pool.idle_bytes <= 1024
    assert pool.acquire(4096, pin=True) is not large  # the large one was let go
    assert pool.acquire(2000, pin=True).nbytes == 2000  # 1024 is too small: a new one


# --- point 9: shared storages, plain attributes, a failed page-lock ----------------------


def test_tensors_sharing_one_storage_are_packed_once() -> None:
    fused = torch.randn(16, 8)
    module = nn.Module()
    module.q = nn.Parameter(fused[:8])  # two views of one fused matrix
    module.k = nn.Parameter(fused[8:])
    q, k = module.q.detach().clone(), module.k.detach().clone()
    placement = relocate(module, "cpu")
    assert placement.nbytes == 512  # 16 × 8 × 4 bytes, aligned: once
    assert module.q.untyped_storage().data_ptr() == module.k.untyped_storage().data_ptr()
    assert torch.equal(module.q, q)
    assert torch.equal(module.k, k)


def test_plain_tensor_attributes_move_with_the_weights() -> None:
    module = tied()
    placement = relocate(module, "cpu")
    assert module.table.untyped_storage().data_ptr() == placement.flat.data_ptr()
    assert torch.equal(module.table, torch.arange(8.0))


def test_a_failed_page_lock_falls_back_to_pageable_memory(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cudart = FakeCudart(fail_with=2)  # cudaErrorMemoryAllocation
    monkeypatch.setattr(torch_weights, "_cudart", lambda: cudart)
    module = tied()
    placement = relocate(module, "cpu", pin=True, pool=PinnedPool())
    assert not placement.pinned
    assert cudart.last_error == 0  # reset: the next kernel launch sees no stale error
    assert module.first.weight.untyped_storage().data_ptr() == placement.flat.data_ptr()
    assert "pageable" in caplog.text


def test_the_deprecated_pynvml_packages_warning_does_not_fail_collection(tmp_path: Path) -> None:
    """torch imports ``pynvml`` when present; the deprecated ``pynvml`` package (not
    nvidia-ml-py) warns on import, which filterwarnings=error would turn into a failed
    ``import torch``. Its warning, as the package writes it, under the project's filters."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    filters = config["tool"]["pytest"]["ini_options"]["filterwarnings"]
    with warnings.catch_warnings():
        for entry in filters:  # applied in order, as pytest does: later ones win
            warnings.filterwarnings(*parse_warning_filter(entry, escape=False))
        warnings.warn(
            "The pynvml package is deprecated. Please install nvidia-ml-py instead. If you "
            "did not install pynvml directly, please report this to the maintainers of the "
            "package that installed pynvml for you.",
            FutureWarning,
            stacklevel=1,
        )
        with pytest.raises(FutureWarning):  # any other FutureWarning still fails
            warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)


def test_backend_start_sets_pci_order_unless_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    TorchBackend()
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    TorchBackend()
    assert os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"


def test_page_locking_without_a_cuda_runtime_falls_back_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_runtime() -> object:
        raise AssertionError("Torch not compiled with CUDA enabled")  # as torch.cuda says

    monkeypatch.setattr(torch_weights, "_cudart", no_runtime)
    placement = relocate(tied(), "cpu", pin=True)
    assert not placement.pinned
