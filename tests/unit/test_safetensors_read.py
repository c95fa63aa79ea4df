"""Reading a safetensors file in large sequential chunks gives the tensors the mapped
reader gives, and is only chosen where it pays: a CPU load of a file not cached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from modelpool.backends.safetensors_read import (  # noqa: E402
    cached_share,
    read_tensors,
    wants_read,
)


def checkpoint(tmp_path: Path) -> Path:
    tensors = {
        "embed": torch.randn(300, 64),
        "half": torch.randn(17, 3).half(),
        "bf": torch.randn(5, 5).to(torch.bfloat16),
        "steps": torch.arange(11, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
    }
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(tensors, str(path))
    return path


def drop(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_read_tensors_equal_the_mapped_ones(tmp_path: Path) -> None:
    path = checkpoint(tmp_path)
    mapped = safetensors_torch.load_file(str(path))
    read = read_tensors(path)
    assert read is not None
    assert set(read) == set(mapped)
    for name, tensor in mapped.items():
        assert read[name].dtype == tensor.dtype
        assert read[name].shape == tensor.shape
        assert torch.equal(read[name], tensor), name
    # One allocation behind them all, not one per tensor.
    assert len({t.untyped_storage().data_ptr() for t in read.values()}) == 1


def test_a_misaligned_tensor_leaves_the_file_to_the_mapped_reader(tmp_path: Path) -> None:
    import json
    import struct

    header = {
        "odd": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
        "f32": {"dtype": "F32", "shape": [1], "data_offsets": [1, 5]},
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(5))
    assert read_tensors(path) is None


def test_a_file_that_ends_early_is_refused_with_where(tmp_path: Path) -> None:
    path = checkpoint(tmp_path)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    assert read_tensors(cut) is None  # the header points past the end: not a view


def test_reading_is_chosen_for_a_cold_file_on_the_cpu_only(tmp_path: Path) -> None:
    path = checkpoint(tmp_path)
    path.read_bytes()
    assert cached_share(path) == 1.0
    assert not wants_read(path, "cpu")  # cached: mapping it copies nothing
    drop(path)
    if cached_share(path) > 0.5:
        pytest.skip("this filesystem keeps the file cached after POSIX_FADV_DONTNEED")
    assert wants_read(path, "cpu")
    assert not wants_read(path, "cuda:0")
