"""Reading a safetensors file into host memory at the disk's speed.

``safetensors.torch.load_file`` maps the file: each tensor is a view of the mapping and
its pages come in on first touch. When the file is in the page cache that is the best
there is (no copy at all: the tensors share the cache's pages). When it is not, every
fault reads a few pages at a time, and a 1 GB checkpoint loads at about three quarters
of what plain sequential ``read()`` calls get from the same disk (bench/load_restore.py).

``read_tensors`` is the cure for that case: one allocation for every tensor, advised
for transparent huge pages (without them the kernel faults each 4 KiB page of the
destination inside ``read()``, which halves a warm copy's speed), filled by large
sequential reads, then one view per tensor. ``cached_share`` says which case a file is
in (``mincore`` over a mapping of it, which reads nothing).

Imported by the torch backend's loads only: it imports torch at the top.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import struct
from pathlib import Path
from typing import Any

import torch

CHUNK = 64 << 20
"""Bytes per ``read()``: large enough that the disk streams, small enough to stay a
fraction of a second each."""
MAX_HEADER = 100 << 20
_MADV_HUGEPAGE = 14

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
    "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
    "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip
"""safetensors dtypes this reader makes views of (others: the caller maps the file)."""


def cached_share(path: Path) -> float:
    """The share of ``path``'s pages in the page cache (1.0 for an empty file)."""
    size = path.stat().st_size
    if size == 0:
        return 1.0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    pages = -(-size // mmap.PAGESIZE)
    vector = ctypes.create_string_buffer(pages)
    with path.open("rb") as stream:
        # A private mapping is writable as a buffer (so ctypes can take its address)
        # and, untouched, reads nothing and copies nothing.
        mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY)
        try:
            anchor = ctypes.c_char.from_buffer(mapped)
            failed = libc.mincore(ctypes.addressof(anchor), size, vector)
            del anchor
        finally:
            mapped.close()
    if failed:
        raise OSError(ctypes.get_errno(), f"mincore failed on {path}")
    return sum(byte & 1 for byte in vector.raw) / pages


def read_tensors(path: Path) -> dict[str, torch.Tensor] | None:
    """Every tensor of the safetensors file ``path``, read into one host allocation;
    None when a tensor cannot be a view of it (an unknown dtype, a misaligned offset)."""
    with path.open("rb", buffering=0) as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        if length > MAX_HEADER:
            raise ValueError(f"{path}: not a safetensors file (header of {length:,} bytes)")
        header: dict[str, Any] = json.loads(stream.read(length))
        header.pop("__metadata__", None)
        start = 8 + length
        size = path.stat().st_size - start
        layout = []
        for name, entry in header.items():
            dtype = DTYPES.get(entry["dtype"])
            begin, end = entry["data_offsets"]
            if dtype is None or begin % dtype.itemsize or end > size:
                return None
            layout.append((name, dtype, tuple(entry["shape"]), begin, end))
        data = torch.empty(size, dtype=torch.uint8)
        _advise_huge_pages(data)
        target = memoryview((ctypes.c_char * size).from_address(data.data_ptr())).cast("B")
        offset = 0
        while offset < size:
            got = stream.readinto(target[offset : offset + CHUNK])
            if not got:
                raise ValueError(f"{path}: ends {size - offset:,} bytes early")
            offset += got
    return {
        name: data[begin:end].view(dtype).reshape(shape)
        for name, dtype, shape, begin, end in layout
    }


def _advise_huge_pages(data: torch.Tensor) -> None:
    """Ask for transparent huge pages over ``data`` (best effort: a kernel without them,
    or with them off, gets 4 KiB pages as before)."""
    page = mmap.PAGESIZE
    start = data.data_ptr()
    aligned = (start + page - 1) // page * page
    length = data.numel() - (aligned - start)
    if length <= 0:
        return
    with contextlib.suppress(AttributeError, OSError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(length), _MADV_HUGEPAGE)


def wants_read(path: Path, device: str) -> bool:
    """Whether reading beats mapping: a CPU load of a file mostly not in the page cache
    (on a device, the tensors are copied either way: the mapping is read by the copy)."""
    if device != "cpu":
        return False
    try:
        return cached_share(path) < 0.5
    except OSError:
        return False
