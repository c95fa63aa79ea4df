"""Where a torch model's weights live: counted, packed into one flat buffer, moved.

The torch backend's warm tier and its measurements, kept apart from the model kinds.
``relocate(module, device)`` copies every parameter and buffer of a module into one
new flat allocation on ``device`` (each tensor a view at a 512-byte-aligned offset) and
points the module at those views; the old memory goes when nothing else holds it.
One allocation per model means one page-locked host buffer to register and free, and
a transfer back to the GPU that is a single copy at full PCIe bandwidth.

Page-locked host memory is registered with ``cudaHostRegister`` over an ordinary
allocation rather than taken from torch's pinned-memory allocator: that allocator
rounds every block up to a power of two and keeps freed blocks cached, so a 9 GB model
would hold 16 GB of host RAM, some of it after the model was gone. Registration is
exact and ends when the buffer is released (or, failing that, garbage-collected).

Imported only by the torch backend, on its first load: it imports torch at the top.
"""

from __future__ import annotations

import gc
import itertools
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

ALIGN = 512
"""Byte alignment of each tensor in a flat buffer (that of torch's CUDA allocator)."""

_PORTABLE = 1
"""``cudaHostRegisterPortable``: page-locked for every CUDA context (as torch does)."""


def resident_bytes(module: nn.Module) -> int:
    """Bytes behind ``module``'s parameters and buffers, each storage counted once."""
    storages: dict[tuple[torch.device, int], int] = {}
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.device.type == "meta":
            continue
        storage = tensor.untyped_storage()
        storages[tensor.device, storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def allocated(device: str) -> int:
    """Bytes torch's allocator holds for tensors on ``device`` (0 off CUDA)."""
    target = torch.device(device)
    if target.type != "cuda":
        return 0
    return int(torch.cuda.memory_allocated(target))


def free_cached(device: str) -> None:
    """Collect dropped tensors and give cached device memory back to the driver."""
    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


class HostBuffer:
    """A flat byte tensor in host RAM, page-locked for CUDA copies when asked."""

    def __init__(self, nbytes: int, pin: bool) -> None:
        self.tensor: torch.Tensor | None = torch.empty(nbytes, dtype=torch.uint8)
        self._unpin: weakref.finalize[[int], HostBuffer] | None = None
        if pin and nbytes:
            # Touch every page first: zero_ runs on all cores, and the registration
            # that follows only locks pages that are already there.
            self.tensor.zero_()
            pointer = self.tensor.data_ptr()
            error = int(_cudart().cudaHostRegister(pointer, nbytes, _PORTABLE))
            if error != 0:
                self.tensor = None
                raise RuntimeError(f"cannot page-lock {nbytes:,} bytes of host memory: {error}")
            # Unregistered before the memory can go: this object holds the tensor.
            self._unpin = weakref.finalize(self, _unregister, pointer)
            self._unpin.atexit = False  # the process's memory goes with it then

    @property
    def pinned(self) -> bool:
        return self._unpin is not None and self._unpin.alive

    def release(self) -> None:
        """Unlock the pages and drop the buffer (views elsewhere keep it alive, unlocked)."""
        if self._unpin is not None:
            self._unpin()
        self.tensor = None


def _unregister(pointer: int) -> None:
    _cudart().cudaHostUnregister(pointer)


def _cudart() -> Any:
    return torch.cuda.cudart()  # type: ignore[no-untyped-call]


@dataclass(slots=True)
class Slot:
    """One distinct tensor of a module: where it is registered, where it goes when packed."""

    owners: list[tuple[nn.Module, str]]
    """The (module, attribute) pairs it is registered under: more than one when tied."""
    parameter: bool
    offset: int

    def current(self) -> torch.Tensor:
        module, name = self.owners[0]
        registry = module._parameters if self.parameter else module._buffers
        tensor = registry[name]
        assert tensor is not None
        return tensor

    def bind(self, tensor: torch.Tensor) -> None:
        if self.parameter:
            self.current().data = tensor  # the same Parameter object: ties survive
        else:
            for module, name in self.owners:
                module._buffers[name] = tensor


@dataclass(slots=True)
class Placement:
    """A module's weights packed into one flat buffer: the layout and the memory."""

    slots: list[Slot]
    flat: torch.Tensor
    host: HostBuffer | None = field(default=None)
    """Set when ``flat`` is in host RAM: the buffer to release (and unlock)."""

    @property
    def nbytes(self) -> int:
        return int(self.flat.numel())

    @property
    def pinned(self) -> bool:
        return self.host is not None and self.host.pinned

    def intact(self) -> bool:
        """Whether the module still uses exactly these views (then it moves in one copy)."""
        base = self.flat.data_ptr()
        return all(slot.current().data_ptr() == base + slot.offset for slot in self.slots)

    def release(self) -> None:
        if self.host is not None:
            self.host.release()


def layout(module: nn.Module) -> tuple[list[Slot], int]:
    """Every distinct parameter and buffer of ``module``, with offsets in a flat buffer."""
    slots: dict[int, Slot] = {}
    for owner in module.modules():
        for parameter, registry in ((True, owner._parameters), (False, owner._buffers)):
            for name, tensor in registry.items():
                if tensor is None:
                    continue
                slot = slots.setdefault(id(tensor), Slot([], parameter, 0))
                slot.owners.append((owner, name))
    total = 0
    for slot in slots.values():
        tensor = slot.current()
        if tensor.layout != torch.strided or tensor.device.type == "meta":
            raise ValueError(f"cannot pack a {tensor.layout} tensor on {tensor.device}")
        slot.offset = total
        total += -(-tensor.numel() * tensor.element_size() // ALIGN) * ALIGN
    return list(slots.values()), total


def relocate(
    module: nn.Module, device: str, *, pin: bool = False, packed: Placement | None = None
) -> Placement:
    """Pack ``module``'s weights into one new flat buffer on ``device`` and use it.

    ``pin`` page-locks it when ``device`` is the CPU. ``packed``, the module's current
    placement if it has one, lets the move be one copy. Raises with the module
    untouched; the caller releases ``packed`` once it is no longer needed.
    """
    target = torch.device(device)
    whole = packed is not None and packed.intact()
    if packed is not None and whole:
        slots, total = packed.slots, packed.nbytes
    else:
        slots, total = layout(module)
    host = HostBuffer(total, pin) if target.type == "cpu" else None
    try:
        flat = host.tensor if host is not None else None
        if flat is None:
            flat = torch.empty(total, dtype=torch.uint8, device=target)
        sources = {target}
        with torch.no_grad():
            if packed is not None and whole:
                flat.copy_(packed.flat, non_blocking=True)
                sources.add(packed.flat.device)
            else:
                for slot in slots:
                    tensor = slot.current()
                    _view(flat, slot.offset, tensor).copy_(tensor, non_blocking=True)
                    sources.add(tensor.device)
        for source in sources:  # non_blocking copies are done only after this
            if source.type == "cuda":
                torch.cuda.synchronize(source)
    except BaseException:
        if host is not None:
            host.release()
        raise
    for slot in slots:
        slot.bind(_view(flat, slot.offset, slot.current()))
    return Placement(slots, flat, host)


def _view(flat: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    """The part of ``flat`` at ``offset`` seen as a contiguous tensor shaped like ``like``."""
    nbytes = like.numel() * like.element_size()
    return flat[offset : offset + nbytes].view(like.dtype).view(like.shape)
