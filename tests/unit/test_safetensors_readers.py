"""Our reader of safetensors files (the GPU loader's loop, run on the CPU): the same
tensors as safetensors' own ``load_file``, and clear errors for files that are not right."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modelpool.backends.safetensors_file import NotReadHere, entries, read_header
from modelpool.backends.safetensors_stream import stream_tensors

SAMPLES = {
    "f32": torch.randn(3, 5),
    "f16": torch.randn(7).half(),
    "bf16": torch.randn(2, 2, 2).bfloat16(),
    "f64": torch.randn(4, dtype=torch.float64),
    "i64": torch.arange(6).reshape(2, 3),
    "i8": torch.tensor([-3, 0, 7], dtype=torch.int8),
    "u8": torch.tensor([1, 255], dtype=torch.uint8),
    "flags": torch.tensor([True, False, True]),
    "scalar": torch.tensor(2.5),
    "empty": torch.empty(0, 4),
}


def write(path: Path, header: dict[str, object], data: bytes) -> Path:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_a_file_with_no_tensor_data(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.safetensors",
        {"e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}},
        b"",
    )
    assert stream_tensors(path, "cpu")["e"].shape == (0,)


@pytest.mark.parametrize(
    ("header", "data", "says"),
    [
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "past the end"),
        (
            {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}},
            b"\0" * 16,
            "not 3 x 4 bytes",
        ),
        (
            {"w": {"dtype": "F32", "shape": "four", "data_offsets": [0, 16]}},
            b"\0" * 16,
            "malformed",
        ),
    ],
)
def test_entries_that_do_not_fit_the_file_are_refused_by_name(
    tmp_path: Path, header: dict[str, object], data: bytes, says: str
) -> None:
    path = write(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(ValueError, match=says) as caught:
        entries(path)
    assert str(path) in str(caught.value)


def test_a_file_that_is_not_safetensors_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"abc")
    with pytest.raises(ValueError, match="shorter than its header"):
        read_header(short)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_header(huge)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 4) + b"{{{{")
    with pytest.raises(ValueError, match="not JSON"):
        read_header(garbage)


def test_a_misaligned_tensor_is_left_to_load_file(tmp_path: Path) -> None:
    data = b"\0" + struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    header = {
        "b": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
        "w": {"dtype": "F32", "shape": [4], "data_offsets": [1, 17]},
    }
    path = write(tmp_path / "odd.safetensors", header, data)
    with pytest.raises(NotReadHere, match="aligned"):
        stream_tensors(path, "cpu")
    assert load_file(str(path))["w"].tolist() == [1.0, 2.0, 3.0, 4.0]  # what reads it then


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_streaming_in_chunks_gives_the_same_tensors(tmp_path: Path, chunk: int) -> None:
    """The GPU loader's loop (two staging buffers taking turns), run on the CPU with
    chunks that end inside tensors, between them and past several at once."""
    path = tmp_path / "w.safetensors"
    save_file({**SAMPLES, "long": torch.randn(3000)}, str(path))
    streamed, reference = stream_tensors(path, "cpu", chunk=chunk), load_file(str(path))
    assert streamed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert streamed[name].dtype == tensor.dtype, name
        assert torch.equal(streamed[name], tensor), name


def test_a_file_cut_short_is_an_error_that_names_it(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.randn(1000)}, str(path))
    start, _ = read_header(path)
    with path.open("r+b") as stream:
        stream.truncate(start + 100)
    with pytest.raises(ValueError, match="past the end") as caught:
        stream_tensors(path, "cpu")
    assert str(path) in str(caught.value)
