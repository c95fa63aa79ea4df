"""A safetensors file streamed to a GPU: large sequential reads into two page-locked
staging buffers that take turns, each copied to the device while the next is read.

``load_file(device="cuda:0")`` copies each tensor from the file's mapping, pageable
memory: the driver stages every copy through a small page-locked buffer of its own and
the copy waits for the page faults that read the file. Here the file is read in
``chunk``-sized sequential reads (the disk's best pace) into a page-locked buffer, whose
bytes go to the tensors' device memory by asynchronous copies on a stream of their own,
while the next chunk is read into the other buffer: disk and bus work at once (the
technique behind ServerlessLLM's loader). The two staging buffers come from, and go back
to, the process's pool of page-locked buffers (``torch_weights.PINNED``), so the next
load reuses them.

Without CUDA the same loop runs with pageable buffers and plain copies (what the unit
tests check on any machine).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

from modelpool.backends.safetensors_file import entries

if TYPE_CHECKING:
    import torch

CHUNK = 32 * 2**20
"""Bytes read at once into one staging buffer: large enough for the disk's sequential
pace, small enough that two of them stay a small page-locked cost."""


def stream_tensors(path: Path, device: str, chunk: int = CHUNK) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors file ``path`` on ``device`` (errors as
    ``safetensors_file.entries`` raises them; ``OSError`` from the reads)."""
    import torch

    from modelpool.backends import torch_weights as weights

    found = entries(path)
    target = torch.device(device)
    cuda = target.type == "cuda"
    # One allocation per tensor, so that each has a storage of its own (a footprint
    # counts tensor bytes) and can be freed alone.
    flats = [torch.empty(entry.nbytes, dtype=torch.uint8, device=target) for entry in found]
    tensors = {
        entry.name: flat.view(entry.dtype).view(entry.shape)
        if entry.nbytes
        else torch.empty(entry.shape, dtype=entry.dtype, device=target)
        for entry, flat in zip(found, flats, strict=True)
    }  # fmt: skip
    wanted = [(entry.start, entry.end, flat) for entry, flat in zip(found, flats, strict=True)
              if entry.nbytes]  # fmt: skip
    if not wanted:
        return tensors
    staging = [weights.PINNED.acquire(chunk, pin=cuda) for _ in range(2)]
    copier = torch.cuda.Stream(device=target) if cuda else None  # type: ignore[no-untyped-call]
    copied: list[torch.cuda.Event | None] = [None, None]
    if copier is not None:
        # The tensors were allocated on the current stream: whatever last used their
        # memory there finishes before the copier writes to it.
        copier.wait_stream(torch.cuda.current_stream(target))
    try:
        with path.open("rb", buffering=0) as file:
            position, finish = wanted[0][0], wanted[-1][1]
            file.seek(position)
            first = 0  # the first tensor not wholly copied yet
            turn = 0
            while position < finish:
                done = copied[turn]
                if done is not None:
                    done.synchronize()  # this buffer's last copies have left it
                into = staging[turn].tensor
                assert into is not None
                size = min(chunk, finish - position)
                _read_exactly(file, into, size, path)
                on_copier = (
                    torch.cuda.stream(copier) if copier is not None else contextlib.nullcontext()
                )
                with on_copier:
                    for start, end, flat in wanted[first:]:
                        if start >= position + size:
                            break
                        low, high = max(start, position), min(end, position + size)
                        if high > low:
                            piece = into[low - position : high - position]
                            flat[low - start : high - start].copy_(piece, non_blocking=cuda)
                    if copier is not None:
                        event = torch.cuda.Event()  # type: ignore[no-untyped-call]
                        event.record(copier)
                        copied[turn] = event
                position += size
                while first < len(wanted) and wanted[first][1] <= position:
                    first += 1
                turn ^= 1
    finally:
        if copier is not None:
            copier.synchronize()  # no copy may still read a buffer handed back
        for buffer in staging:
            weights.PINNED.give_back(buffer)
    return tensors


def _read_exactly(file: io.FileIO, buffer: torch.Tensor, size: int, path: Path) -> None:
    """Fill the first ``size`` bytes of ``buffer`` from ``file``'s position on."""
    view = memoryview(buffer.numpy()).cast("B")[:size]  # type: ignore[arg-type]
    got = 0
    while got < size:
        count = file.readinto(view[got:])
        if not count:
            raise OSError(f"{path}: the file ended {size - got:,} bytes early while read")
        got += count
