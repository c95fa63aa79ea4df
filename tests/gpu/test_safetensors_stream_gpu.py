"""On a real GPU: a safetensors file streamed to cuda:0 through two page-locked staging
buffers is the file's tensors, and the buffers are kept for the next load."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from safetensors.torch import load_file, save_file  # noqa: E402

from modelpool.backends.safetensors_stream import stream_tensors  # noqa: E402
from modelpool.backends.torch_weights import PINNED  # noqa: E402

DEVICE = "cuda:0"


def checkpoint(folder: Path) -> Path:
    path = folder / "w.safetensors"
    tensors = {
        "embed": torch.randn(8192, 2048),  # 64 MiB: spans chunks
        "norm": torch.randn(2048).half(),
        "head": torch.randn(1000, 333).bfloat16(),
        "ids": torch.arange(77),
    }
    save_file(tensors, str(path))
    return path


def test_the_streamed_tensors_are_the_files(tmp_path: Path) -> None:
    path = checkpoint(tmp_path)
    streamed, reference = stream_tensors(path, DEVICE), load_file(str(path), device=DEVICE)
    assert streamed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert streamed[name].device == torch.device(DEVICE), name
        assert torch.equal(streamed[name], tensor), name


def test_the_staging_buffers_are_page_locked_and_reused(tmp_path: Path) -> None:
    PINNED.clear()
    path = checkpoint(tmp_path)
    registered = PINNED.registered
    stream_tensors(path, DEVICE)
    assert PINNED.registered - registered == 2  # two page-locked buffers, once
    reused = PINNED.reused
    stream_tensors(path, DEVICE)
    assert PINNED.registered - registered == 2
    assert PINNED.reused - reused == 2
    PINNED.clear()
