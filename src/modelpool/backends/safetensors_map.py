"""A safetensors file's tensors on the CPU, mapped from the file with every page in at once.

``safetensors.torch.load_file`` maps the file too, but leaves each page to be faulted in
by the first pass over the weights; from a cold page cache those faults read the file in
readahead-sized pieces, slower than one sequential read (``bench/load_restore.py``). Here
the mapping is populated in one ``madvise(MADV_POPULATE_READ)`` (Linux 5.14+; else
``MADV_WILLNEED`` asks the kernel to read ahead): the kernel reads the file in large
sequential requests and maps every page before the first forward pass needs it. A file
already in the page cache is mapped without a copy, as before.

The mapping is private (copy-on-write), like ``load_file``'s: a model that writes to a
weight changes its own copy, never the file. The tensors keep the mapping alive; it goes
when the last of them does.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
"""Linux's value where Python's mmap module does not name it yet (3.11)."""
HEADER_LIMIT = 100 * 2**20
"""A header larger than this is not a safetensors header (safetensors' own limit)."""

_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}  # fmt: skip
"""safetensors dtype names and torch's; a file with another falls back to ``load_file``."""


class NotMappable(Exception):
    """The file holds something this reader leaves to ``load_file`` (an unusual dtype,
    a tensor not aligned to its element size)."""


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


def map_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors file ``path``, on the CPU, viewing a private
    populated mapping of the file. ``ValueError`` for a file that is not safetensors or
    whose entries do not fit in it; ``NotMappable`` for one this reader leaves to
    ``load_file``."""
    import torch

    start, header = read_header(path)
    entries = []
    for name, entry in header.items():
        try:
            dtype = getattr(torch, _DTYPES[entry["dtype"]])
            begin, end = (int(offset) for offset in entry["data_offsets"])
            shape = [int(size) for size in entry["shape"]]
        except KeyError as error:
            raise NotMappable(f"{path}: tensor {name!r}: {error} is not read here") from None
        except (TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name!r} has a malformed entry: {entry!r}") from None
        itemsize = dtype.itemsize
        count = 1
        for size in shape:
            count *= size
        if end - begin != count * itemsize or begin < 0 or begin > end:
            raise ValueError(
                f"{path}: tensor {name!r} spans bytes {begin}-{end}, "
                f"not {count} x {itemsize} bytes of {entry['dtype']}"
            )
        if (start + begin) % itemsize:
            raise NotMappable(f"{path}: tensor {name!r} is not aligned to its element size")
        entries.append((name, dtype, begin, end, shape))
    size = path.stat().st_size
    if any(start + end > size for _, _, _, end, _ in entries):
        raise ValueError(f"{path}: a tensor ends past the end of the file ({size:,} bytes)")
    if size == start:  # nothing to map (mmap refuses an empty range)
        return {name: torch.empty(shape, dtype=dtype) for name, dtype, _, _, shape in entries}
    with path.open("rb") as stream:
        mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY)
    _populate(mapping)
    # A storage of its own per tensor (each keeps the mapping alive): a model's
    # footprint counts its tensors' bytes, not the header between them.
    return {
        name: torch.frombuffer(mapping, dtype=dtype, count=(end - begin) // dtype.itemsize,
                               offset=start + begin).view(shape)
        if end > begin
        else torch.empty(shape, dtype=dtype)
        for name, dtype, begin, end, shape in entries
    }  # fmt: skip


def _populate(mapping: mmap.mmap) -> None:
    """Every page of ``mapping`` read and mapped now, in one call where the kernel can."""
    try:
        mapping.madvise(MADV_POPULATE_READ)
    except OSError:  # an older kernel: ask for readahead, the first pass maps the pages
        mapping.madvise(mmap.MADV_WILLNEED)
