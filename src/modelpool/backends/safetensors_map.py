"""A safetensors file's tensors on the CPU, mapped from the file with every page in at once.

``safetensors.torch.load_file`` maps the file too, but leaves each page to be faulted in
by the first pass over the weights; from a cold page cache those faults read the file in
readahead-sized pieces, slower than one sequential read (``bench/load_restore.py``). Here
the mapping is populated in one ``madvise(MADV_POPULATE_READ)`` (Linux 5.14+; else
``MADV_WILLNEED`` asks the kernel to read ahead): the kernel reads the file in large
sequential requests and maps every page before the first forward pass needs it. A file
already in the page cache is mapped without a copy, as before.

The mapping is private (copy-on-write), like ``load_file``'s: a model that writes to a
weight changes its own copy, never the file. Each tensor has a storage of its own over
the mapping (a model's footprint counts its tensors' bytes, not the header) and keeps
the mapping alive; it goes when the last of them does.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import TYPE_CHECKING

from modelpool.backends.safetensors_file import entries

if TYPE_CHECKING:
    import torch

MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
"""Linux's value where Python's mmap module does not name it yet (3.11)."""


def map_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors file ``path``, on the CPU (errors as
    ``safetensors_file.entries`` raises them)."""
    import torch

    found = entries(path)
    if all(entry.nbytes == 0 for entry in found):  # nothing to map (mmap refuses none)
        return {entry.name: torch.empty(entry.shape, dtype=entry.dtype) for entry in found}
    with path.open("rb") as stream:
        mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY)
    _populate(mapping)
    return {
        entry.name: torch.frombuffer(
            mapping, dtype=entry.dtype, count=entry.nbytes // entry.dtype.itemsize,
            offset=entry.start,
        ).view(entry.shape)
        if entry.nbytes
        else torch.empty(entry.shape, dtype=entry.dtype)
        for entry in found
    }  # fmt: skip


def _populate(mapping: mmap.mmap) -> None:
    """Every page of ``mapping`` read and mapped now, in one call where the kernel can."""
    try:
        mapping.madvise(MADV_POPULATE_READ)
    except OSError:  # an older kernel: ask for readahead, the first pass maps the pages
        mapping.madvise(mmap.MADV_WILLNEED)
