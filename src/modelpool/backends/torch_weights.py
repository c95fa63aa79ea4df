"""Where a torch model's weights live: counted, packed into one flat buffer, moved, freed.

The torch backend's warm tier and its measurements, kept apart from the model kinds.
``relocate(module, device)`` copies every tensor a module holds (parameters, buffers,
and tensors kept as plain attributes, which would otherwise stay on the GPU while the
model is "warm") into one flat allocation on ``device`` and points the module at views
of it. Tensors that share one storage (tied weights, views of one fused matrix) are
packed once, as their storage, and keep sharing it. One allocation per model means one
page-locked host buffer, and a transfer back to the GPU that is a single copy.

Page-locked host memory is registered with ``cudaHostRegister`` over an ordinary
allocation rather than taken from torch's pinned-memory allocator: that allocator
rounds every block up to a power of two and keeps freed blocks cached, so a 9 GB model
would hold 16 GB of host RAM. Registering is slow (every page is touched and locked),
so released page-locked buffers are kept in a ``PinnedPool`` for the next offload of a
model that fits, within the most page-locked memory the warm tier has used at once
(the scheduler keeps that within ``warm_budget``). A failed registration falls back to
ordinary pageable memory (slower copies, nothing else changes) and clears the error it
left in the CUDA runtime, which would otherwise fail the thread's next kernel launch.

``release_tensors`` is what an unload does: every tensor the module holds is rebound to
an empty tensor, so the memory comes back even while someone (a lease, a local
variable) still holds the module.

Imported only by the torch backend, on its first load: it imports torch at the top.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

log = logging.getLogger("modelpool.torch")

ALIGN = 512
"""Byte alignment of each storage in a flat buffer (that of torch's CUDA allocator)."""

_PORTABLE = 1
"""``cudaHostRegisterPortable``: page-locked for every CUDA context (as torch does)."""

REUSE_SLACK = 1.25
"""A kept page-locked buffer is reused for a model of at least 1/1.25 of its size."""

Kind = Literal["parameter", "buffer", "attribute"]


# --- what a module holds ---------------------------------------------------------------


def held_tensors(module: nn.Module) -> Iterator[tuple[nn.Module, str, Kind, torch.Tensor]]:
    """Every (owner, name, kind, tensor) of ``module`` and its submodules: parameters,
    buffers, and tensors kept as plain attributes. A tensor registered under several
    names comes once per name."""
    for owner in module.modules():
        for name, parameter in owner._parameters.items():
            if parameter is not None:
                yield owner, name, "parameter", parameter
        for name, buffer in owner._buffers.items():
            if buffer is not None:
                yield owner, name, "buffer", buffer
        for name, value in vars(owner).items():
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                yield owner, name, "attribute", value


def resident_bytes(module: nn.Module) -> int:
    """Bytes behind every tensor ``module`` holds, each storage counted once: the
    model's own footprint, whatever else moves on the device at the same time."""
    storages: dict[tuple[torch.device, int], int] = {}
    for _, _, _, tensor in held_tensors(module):
        if tensor.device.type == "meta" or tensor.layout != torch.strided:
            continue
        storage = tensor.untyped_storage()
        storages[tensor.device, storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def free_cached(device: str) -> None:
    """Collect dropped tensors and give cached device memory back to the driver (the
    caching allocator keeps freed blocks, which NVML counts as used, until then)."""
    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        torch.cuda.empty_cache()


def release_tensors(module: nn.Module) -> None:
    """Point every tensor of ``module`` at an empty tensor (no elements), so that its
    memory goes now even if someone still holds the module (a lease, a local variable).
    The module is unusable afterwards: it is what an unload leaves."""
    with torch.no_grad():
        for owner, name, kind, tensor in list(held_tensors(module)):
            # No elements, on the same device: .data only takes a tensor of the same type
            # (a meta tensor is refused), and an empty one holds no memory.
            empty = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
            if kind == "parameter":
                tensor.data = empty  # the same Parameter object, shared by ties
            elif kind == "buffer":
                owner._buffers[name] = empty
            else:
                vars(owner)[name] = empty


# --- page-locked host memory -----------------------------------------------------------


class HostBuffer:
    """A flat byte tensor in host RAM, page-locked for CUDA copies when asked and
    possible (else pageable: ``pinned`` says which)."""

    def __init__(self, nbytes: int, pin: bool) -> None:
        self.nbytes = nbytes
        self.tensor: torch.Tensor | None = torch.empty(nbytes, dtype=torch.uint8)
        self._unpin: weakref.finalize[[int], HostBuffer] | None = None
        if pin and nbytes:
            # Touch every page first: zero_ runs on all cores, and the registration
            # that follows only locks pages that are already there.
            self.tensor.zero_()
            pointer = self.tensor.data_ptr()
            try:
                error = int(_cudart().cudaHostRegister(pointer, nbytes, _PORTABLE))
            except (RuntimeError, AssertionError) as failure:  # no CUDA runtime at all
                log.warning("cannot page-lock host memory (%s): pageable it is", failure)
                return
            if error != 0:
                # "cudaGetLastError: Returns the last error that has been produced by any
                # of the runtime calls in the same instance of the CUDA Runtime library in
                # the host thread and resets it to cudaSuccess" (CUDA Runtime API): left
                # set, it would be reported by the next kernel launch's check.
                cleared = clear_cuda_error()
                log.warning(
                    "cannot page-lock %s bytes of host memory (CUDA error %d%s): the warm "
                    "copy stays in pageable memory, slower to restore",
                    f"{nbytes:,}", error, "" if cleared else "; the error could not be reset",
                )  # fmt: skip
                return
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


class PinnedPool:
    """Page-locked host buffers kept after use, for the next offload that fits.

    Idle buffers are kept while everything page-locked (in use and idle) stays within
    the most that was ever in use at once, which the warm tier keeps within
    ``warm_budget``, and within ``limit`` when one is given; beyond that the oldest
    idle buffers are unlocked and freed. Pageable buffers are never kept.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self._idle: list[HostBuffer] = []
        self._in_use = 0
        self._peak = 0
        self._lock = threading.Lock()  # offloads run in worker threads
        self.reused = 0
        self.registered = 0

    @property
    def idle_bytes(self) -> int:
        return sum(buffer.nbytes for buffer in self._idle)

    def acquire(self, nbytes: int, pin: bool) -> HostBuffer:
        """A host buffer of at least ``nbytes``: a kept page-locked one if one fits (at
        most 25% larger), else a new one (page-locked when ``pin`` and possible)."""
        if pin:
            with self._lock:
                fits = [b for b in self._idle if nbytes <= b.nbytes <= nbytes * REUSE_SLACK]
                if fits:
                    buffer = min(fits, key=lambda b: b.nbytes)
                    self._idle.remove(buffer)
                    self._in_use += buffer.nbytes
                    self._peak = max(self._peak, self._in_use)
                    self.reused += 1
                    return buffer
        buffer = HostBuffer(nbytes, pin)
        if buffer.pinned:
            with self._lock:
                self.registered += 1
                self._in_use += buffer.nbytes
                self._peak = max(self._peak, self._in_use)
                self._trim()
        return buffer

    def give_back(self, buffer: HostBuffer) -> None:
        """``buffer`` is no longer used: kept for reuse if page-locked and within bounds."""
        if not buffer.pinned:
            buffer.release()
            return
        with self._lock:
            self._in_use = max(0, self._in_use - buffer.nbytes)
            self._idle.append(buffer)
            self._trim()

    def clear(self) -> None:
        """Unlock and free every idle buffer."""
        with self._lock:
            idle, self._idle = self._idle, []
        for buffer in idle:
            buffer.release()

    def _trim(self) -> None:
        bound = self._peak if self.limit is None else min(self._peak, self.limit)
        while self._idle and self._in_use + self.idle_bytes > bound:
            self._idle.pop(0).release()


PINNED = PinnedPool()
"""The process's kept page-locked buffers (page-locked memory is the whole process's)."""


def _unregister(pointer: int) -> None:
    _cudart().cudaHostUnregister(pointer)


def _cudart() -> Any:
    return torch.cuda.cudart()  # type: ignore[no-untyped-call]


def clear_cuda_error() -> bool:
    """Reset the calling thread's last CUDA runtime error; False if it cannot be reached.

    torch's ``cudart()`` binds no ``cudaGetLastError``: it is called in the CUDA runtime
    library this process has loaded already (found in /proc/self/maps, opened with
    RTLD_NOLOAD so that no second copy is ever loaded)."""
    library = _runtime_library()
    if library is None:
        return False
    library.cudaGetLastError()
    return True


def _runtime_library() -> Any:
    bound = _cudart()
    if hasattr(bound, "cudaGetLastError"):
        return bound
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libcudart.so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue
    return None  # linked statically into torch: not reachable from here


# --- packing ---------------------------------------------------------------------------


@dataclass(slots=True)
class Slot:
    """One distinct tensor of a module: where it is held, and where it goes when packed."""

    owners: list[tuple[nn.Module, str]]
    """The (module, attribute) pairs it is held under: more than one when tied."""
    kind: Kind
    region: int
    """Byte offset in the flat buffer of the storage this tensor views."""
    element_offset: int = 0
    shape: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dtype: torch.dtype = torch.uint8

    def current(self) -> torch.Tensor:
        module, name = self.owners[0]
        tensor: torch.Tensor | None
        if self.kind == "parameter":
            tensor = module._parameters[name]
        elif self.kind == "buffer":
            tensor = module._buffers[name]
        else:
            tensor = vars(module)[name]
        assert isinstance(tensor, torch.Tensor)
        return tensor

    def view(self, flat: torch.Tensor) -> torch.Tensor:
        """This tensor as a view of ``flat``, with its own shape, stride and offset."""
        size = self.dtype.itemsize
        start = flat.storage_offset() + self.region  # bytes into flat's storage
        typed = flat.view(self.dtype)  # flat holds whole 512-byte blocks: always divisible
        return typed.as_strided(self.shape, self.stride, start // size + self.element_offset)

    def bind(self, tensor: torch.Tensor) -> None:
        if self.kind == "parameter":
            self.current().data = tensor  # the same Parameter object: ties survive
        else:
            for module, name in self.owners:
                if self.kind == "buffer":
                    module._buffers[name] = tensor
                else:
                    vars(module)[name] = tensor


@dataclass(slots=True)
class Region:
    """One storage of the module, copied once into the flat buffer at ``offset``."""

    offset: int
    nbytes: int
    source: torch.Tensor | None = None
    """At layout time: the storage's bytes as a uint8 tensor (dropped after the copy)."""


@dataclass(slots=True)
class Placement:
    """A module's weights packed into one flat buffer: the layout and the memory."""

    slots: list[Slot]
    regions: list[Region]
    flat: torch.Tensor
    host: HostBuffer | None = field(default=None)
    """Set when ``flat`` is in host RAM: the buffer to give back (and keep, if locked)."""
    pool: PinnedPool | None = None
    copy_seconds: float = 0.0
    """How long the copy itself took (copies issued to their completion), apart from
    allocating, page-locking and rebinding: what compares with a raw transfer."""

    @property
    def nbytes(self) -> int:
        return sum(-(-region.nbytes // ALIGN) * ALIGN for region in self.regions)

    @property
    def host_bytes(self) -> int:
        """Host RAM this placement holds: its buffer's size (a reused page-locked buffer
        may be up to 25% larger than the weights), or ``nbytes``."""
        return self.host.nbytes if self.host is not None else self.nbytes

    @property
    def pinned(self) -> bool:
        return self.host is not None and self.host.pinned

    def intact(self) -> bool:
        """Whether the module still uses exactly these views (then it moves in one copy)."""
        for slot in self.slots:
            tensor = slot.current()
            if tensor.device != self.flat.device or tuple(tensor.shape) != slot.shape:
                return False
            if tensor.data_ptr() != slot.view(self.flat).data_ptr():
                return False
        return True

    def release(self) -> None:
        if self.host is not None:
            host, self.host = self.host, None
            if self.pool is not None:
                self.pool.give_back(host)
            else:
                host.release()


def layout(module: nn.Module) -> tuple[list[Slot], list[Region]]:
    """Every distinct tensor of ``module``, grouped by the storage it views; each
    storage gets a 512-byte-aligned region of a flat buffer."""
    slots: dict[int, Slot] = {}
    tensors: dict[int, torch.Tensor] = {}
    for owner, name, kind, tensor in held_tensors(module):
        if tensor.layout != torch.strided or tensor.device.type == "meta":
            raise ValueError(f"cannot pack a {tensor.layout} tensor on {tensor.device}")
        slot = slots.setdefault(id(tensor), Slot([], kind, 0))
        slot.owners.append((owner, name))
        tensors[id(tensor)] = tensor
    regions: dict[tuple[torch.device, int], Region] = {}
    total = 0
    for key, slot in slots.items():
        tensor = tensors[key]
        storage = tensor.untyped_storage()
        where = (tensor.device, storage.data_ptr())
        region = regions.get(where)
        if region is None:
            source = torch.empty(0, dtype=torch.uint8, device=tensor.device).set_(storage)
            region = regions[where] = Region(total, storage.nbytes(), source)
            total += -(-storage.nbytes() // ALIGN) * ALIGN
        slot.region = region.offset
        slot.element_offset = int(tensor.storage_offset())
        slot.shape, slot.stride, slot.dtype = tuple(tensor.shape), tensor.stride(), tensor.dtype
    return list(slots.values()), list(regions.values())


def relocate(
    module: nn.Module,
    device: str,
    *,
    pin: bool = False,
    packed: Placement | None = None,
    pool: PinnedPool | None = None,
) -> Placement:
    """Pack ``module``'s weights into one new flat buffer on ``device`` and use it.

    ``pin`` page-locks it when ``device`` is the CPU (from ``pool`` when given, which
    keeps it afterwards). ``packed``, the module's current placement if it has one, lets
    the move be one copy. Raises with the module untouched; the caller releases
    ``packed`` once it is no longer needed.
    """
    target = torch.device(device)
    whole = packed is not None and packed.intact()
    if packed is not None and whole:
        slots, regions = packed.slots, [Region(r.offset, r.nbytes) for r in packed.regions]
    else:
        slots, regions = layout(module)
    total = sum(-(-region.nbytes // ALIGN) * ALIGN for region in regions)
    host: HostBuffer | None = None
    if target.type == "cpu":
        host = pool.acquire(total, pin) if pool is not None else HostBuffer(total, pin)
    try:
        if host is not None:
            assert host.tensor is not None
            flat = host.tensor[:total]
        else:
            flat = torch.empty(total, dtype=torch.uint8, device=target)
        sources = {target}
        started = time.perf_counter()
        with torch.no_grad():
            if packed is not None and whole:
                flat.copy_(packed.flat, non_blocking=True)
                sources.add(packed.flat.device)
            else:
                for region in regions:
                    assert region.source is not None
                    flat[region.offset : region.offset + region.nbytes].copy_(
                        region.source, non_blocking=True
                    )
                    sources.add(region.source.device)
        for source in sources:  # non_blocking copies are done only after this
            if source.type == "cuda":
                torch.cuda.synchronize(source)
        copy_seconds = time.perf_counter() - started
    except BaseException:
        if host is not None:
            if pool is not None:
                pool.give_back(host)
            else:
                host.release()
        raise
    for region in regions:
        region.source = None  # the old storage may go once the module lets it go
    for slot in slots:
        slot.bind(slot.view(flat))
    return Placement(slots, regions, flat, host, pool if host is not None else None, copy_seconds)
