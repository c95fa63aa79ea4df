"""The safetensors format, read by our own loader (``safetensors_stream``, to a GPU) and
by estimates: the header and each tensor's entry, checked against the file.

A file is 8 bytes of header length (little-endian), a JSON header naming each tensor's
dtype, shape and ``data_offsets`` (from the end of the header), then the data.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

HEADER_LIMIT = 100 * 2**20
"""A header larger than this is not a safetensors header (safetensors' own limit)."""

_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}  # fmt: skip
"""safetensors dtype names and torch's; a file with another is left to ``load_file``."""


class NotReadHere(Exception):
    """The file holds something our loader leaves to ``safetensors.torch.load_file``
    (an unusual dtype, a tensor not aligned to its element size)."""


@dataclass(frozen=True)
class Entry:
    """One tensor of the file: its bytes are ``[start, end)`` of the whole file."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """The byte where the tensor data starts, and the header's tensor entries.
    ``ValueError`` naming the file when it is not a safetensors file."""
    with path.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its header)")
        (length,) = struct.unpack("<Q", prefix)
        if length > HEADER_LIMIT:
            raise ValueError(f"{path}: not a safetensors file (header of {length:,} bytes)")
        raw = stream.read(length)
    if len(raw) < length:
        raise ValueError(f"{path}: the header is cut short ({len(raw):,} of {length:,} bytes)")
    try:
        header = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"{path}: the header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a JSON object")
    header.pop("__metadata__", None)
    return 8 + length, header


def entries(path: Path) -> list[Entry]:
    """Every tensor of ``path``, in file order, checked: ``ValueError`` for a file that
    is not safetensors or whose entries do not fit in it; ``NotReadHere`` for one our
    loader leaves to ``load_file``."""
    import torch

    start, header = read_header(path)
    found = []
    for name, entry in header.items():
        try:
            dtype = getattr(torch, _DTYPES[entry["dtype"]])
            begin, end = (int(offset) for offset in entry["data_offsets"])
            shape = tuple(int(size) for size in entry["shape"])
        except KeyError as error:
            raise NotReadHere(f"{path}: tensor {name!r}: {error} is not read here") from None
        except (TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name!r} has a malformed entry: {entry!r}") from None
        count = 1
        for size in shape:
            count *= size
        if end - begin != count * dtype.itemsize or begin < 0 or begin > end:
            raise ValueError(
                f"{path}: tensor {name!r} spans bytes {begin}-{end}, "
                f"not {count} x {dtype.itemsize} bytes of {entry['dtype']}"
            )
        if (start + begin) % dtype.itemsize:
            raise NotReadHere(f"{path}: tensor {name!r} is not aligned to its element size")
        found.append(Entry(name, dtype, shape, start + begin, start + end))
    size = path.stat().st_size
    if any(entry.end > size for entry in found):
        raise ValueError(f"{path}: a tensor ends past the end of the file ({size:,} bytes)")
    return sorted(found, key=lambda entry: entry.start)
