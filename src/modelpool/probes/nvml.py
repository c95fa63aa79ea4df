"""NvmlProbe: NVIDIA GPU memory through NVML (package nvidia-ml-py, imported lazily).

What it reads, and why (nvidia-ml-py 13.x, NVML API reference):

* the device is found by UUID, never by taking ``cuda:N`` to be NVML index N (see
  ``gpu_ids``); a MIG-enabled parent GPU is not read as if it were the instance;
* memory through ``nvmlDeviceGetMemoryInfo(handle, version=nvmlMemory_v2)``: its
  ``used`` includes ``reserved`` (memory the driver and firmware set aside, never
  allocatable), so a reading is ``total - reserved`` and ``used - reserved``; an old
  driver without the v2 call is read with v1;
* per-process use through ``nvmlDeviceGetComputeRunningProcesses`` (v3; an old driver
  makes pynvml raise ``NVMLLibraryMismatchError``, a plain ``Exception``, and v2 is
  tried); pids that NVML does not list (containers see host pids, MPS, a model on the
  CPU) make the figure unknown (None), never 0;
* the pool's own process: its CUDA context, library workspaces and the allocator's
  cached blocks are the pool's, not a neighbour's. Its NVML figure beyond the bytes of
  its live tensors (torch's ``memory_allocated``) is left out of ``used``, which is what
  the ledger sets its bookings against; ``headroom`` is what covers that overhead.

Every NVML error (the ``NVMLError`` subclasses, and ``NVMLLibraryMismatchError``)
makes the reading unknown (None) for that call: evidence is optional, and a GPU that is
lost, a permission refused or an old driver must not stop a load or an unload.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from modelpool.core.ports import MemoryReading
from modelpool.probes.gpu_ids import (
    UUID_PREFIXES,
    bare_uuid,
    cuda_index,
    parse_visible_devices,
    torch_cuda_in_use,
    torch_uuid,
)
from modelpool.types import Bytes, DeviceId

__all__ = ["NvmlProbe", "cuda_index"]

log = logging.getLogger("modelpool.probes")


class NvmlProbe:
    """Whole-device total/used per ``cuda:N``, and per-process use where NVML reports it.

    NVML counts what every process holds (other users, the CUDA context), which is what
    decides whether the next model fits; torch's allocator sees only its own process.
    """

    name = "nvml"

    def __init__(
        self,
        nvml: Any = None,
        *,
        environ: Mapping[str, str] | None = None,
        torch_cuda: Callable[[], Any] = torch_cuda_in_use,
        pid: int | None = None,
    ) -> None:
        """``environ`` (default ``os.environ``), ``torch_cuda`` (``torch.cuda`` where CUDA
        runs in this process, else None) and ``pid`` (this process) are for tests."""
        self._nvml = nvml if nvml is not None else importlib.import_module("pynvml")
        self._environ = environ if environ is not None else os.environ
        self._torch_cuda = torch_cuda
        self._pid = pid if pid is not None else os.getpid()
        errors: list[type[BaseException]] = [self._nvml.NVMLError]
        mismatch = getattr(self._nvml, "NVMLLibraryMismatchError", None)
        if isinstance(mismatch, type) and issubclass(mismatch, BaseException):
            errors.append(mismatch)
        self._errors = tuple(errors)
        self._nvml.nvmlInit()
        self._count = int(self._nvml.nvmlDeviceGetCount())
        self._reported: set[tuple[DeviceId, str]] = set()

    @property
    def device_count(self) -> int:
        return self._count

    # --- which GPU ------------------------------------------------------------------

    def _handle(self, device: DeviceId) -> Any:
        """NVML's handle for ``device``, or None if it is not a GPU this probe can place."""
        index = cuda_index(device)
        if index is None:
            return None
        uuid = torch_uuid(self._torch_cuda(), index)
        if uuid is not None:  # CUDA runs here: its device N is the one to read
            return self._by_uuid(uuid)
        visible = parse_visible_devices(self._environ.get("CUDA_VISIBLE_DEVICES"))
        entry = str(index) if visible is None else None
        if visible is not None:
            if index >= len(visible):
                return None
            entry = visible[index]
        assert entry is not None
        if entry.startswith(UUID_PREFIXES):
            return self._by_uuid(entry)
        # An ordinal: counted in PCI order, that of the processes the pool starts.
        ordinal = int(entry)
        if ordinal >= self._count:
            return None
        handle = self._nvml.nvmlDeviceGetHandleByIndex(ordinal)
        if self._is_mig_parent(handle):
            self._report(device, "is a MIG-enabled GPU: name its instance by UUID")
            return None
        return handle

    def _by_uuid(self, uuid: str) -> Any:
        """The handle of a GPU or MIG instance by UUID, with or without NVML's prefix, or a
        unique prefix of one (CUDA_VISIBLE_DEVICES accepts those)."""
        candidates = [uuid] if uuid.startswith(UUID_PREFIXES) else [p + uuid for p in UUID_PREFIXES]
        for candidate in candidates:
            try:
                handle = self._nvml.nvmlDeviceGetHandleByUUID(candidate)
            except self._nvml.NVMLError:
                continue  # NVMLError_NotFound for an unknown or partial UUID
            return None if self._is_mig_parent(handle) else handle
        wanted = bare_uuid(uuid)
        matches = []
        for index in range(self._count):
            handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
            if bare_uuid(str(self._nvml.nvmlDeviceGetUUID(handle))).startswith(wanted):
                matches.append(handle)
        if len(matches) == 1 and not self._is_mig_parent(matches[0]):
            return matches[0]
        return None

    def _is_mig_parent(self, handle: Any) -> bool:
        """Whether ``handle`` is a whole GPU in MIG mode (its figures are not one
        instance's, and reading its processes needs privileges)."""
        nvml = self._nvml
        try:
            if int(nvml.nvmlDeviceIsMigDeviceHandle(handle)):
                return False
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        except nvml.NVMLError:  # NVMLError_NotSupported: a GPU without MIG
            return False
        return int(current) == int(getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))

    def uuid(self, device: DeviceId) -> str | None:
        """NVML's UUID of the GPU (or MIG instance) ``device`` is, None if not placed."""
        try:
            handle = self._handle(device)
            return None if handle is None else str(self._nvml.nvmlDeviceGetUUID(handle))
        except self._errors:
            return None

    # --- readings -------------------------------------------------------------------

    def read(self, device: DeviceId) -> MemoryReading | None:
        try:
            handle = self._handle(device)
            if handle is None:
                return None
            total, used = self._memory(handle)
            used -= self._own_overhead(device, handle)
        except self._errors as error:
            self._report(device, f"cannot be read: {type(error).__name__}: {error}")
            return None
        return MemoryReading(device, total, max(0, used))

    def _memory(self, handle: Any) -> tuple[Bytes, Bytes]:
        """(allocatable total, allocated) of ``handle``: v2 figures less ``reserved``."""
        nvml = self._nvml
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None:
            try:
                info = nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            except nvml.NVMLError:  # NVMLError_FunctionNotFound on an old driver: v1
                pass
            else:
                reserved = int(info.reserved)
                return int(info.total) - reserved, int(info.used) - reserved
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        return int(info.total), int(info.used)

    def _own_overhead(self, device: DeviceId, handle: Any) -> Bytes:
        """What this process holds on the device beyond its live tensors: its CUDA
        context, workspaces, the allocator's cached blocks. 0 where NVML cannot tell."""
        usage = self._processes(handle)
        own = usage.get(self._pid) if usage else None
        if own is None:
            return 0
        cuda = self._torch_cuda()
        tensors = 0
        index = cuda_index(device)
        if cuda is not None and index is not None:
            try:
                tensors = int(cuda.memory_allocated(index))
            except Exception:  # no figure: all of our use counts as overhead
                tensors = 0
        return max(0, own - tensors)

    def _processes(self, handle: Any) -> dict[int, Bytes] | None:
        """Bytes each process holds through ``handle``; None where NVML cannot tell."""
        nvml = self._nvml
        try:
            processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except self._errors:
            # NVMLLibraryMismatchError: the driver has no v3 call; v2 reads the same.
            older = getattr(nvml, "nvmlDeviceGetComputeRunningProcesses_v2", None)
            if older is None:
                return None
            try:
                processes = older(handle)
            except self._errors:
                return None
        usage: dict[int, Bytes] = {}
        for process in processes:
            used = process.usedGpuMemory
            if used is None:  # pynvml's None: NVML_VALUE_NOT_AVAILABLE (WDDM, some containers)
                continue
            usage[int(process.pid)] = usage.get(int(process.pid), 0) + int(used)
        return usage

    def process_usage(self, device: DeviceId) -> dict[int, Bytes]:
        """Bytes each process holds on ``device`` ({} where NVML cannot tell)."""
        try:
            handle = self._handle(device)
            usage = self._processes(handle) if handle is not None else None
        except self._errors as error:
            self._report(device, f"cannot list processes: {type(error).__name__}: {error}")
            return {}
        return usage or {}

    def process_bytes(self, device: DeviceId, pids: Iterable[int]) -> Bytes | None:
        """GPU memory held on ``device`` by ``pids`` and their children; None where NVML
        lists none of them (host pids in a container, MPS, a model on the CPU) or does
        not report per-process use: unknown, never 0."""
        usage = self.process_usage(device)
        tree = _with_children(pids)
        held = [used for pid, used in usage.items() if pid in tree]
        return sum(held) if held else None

    def _report(self, device: DeviceId, problem: str) -> None:
        """Log a problem once per device, not on every tick."""
        if (device, problem) not in self._reported:
            self._reported.add((device, problem))
            log.warning("NVML: %s %s", device, problem)

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def _with_children(pids: Iterable[int]) -> set[int]:
    """``pids`` and every descendant (a server may run its model in a child process)."""
    tree = set(pids)
    try:
        import psutil
    except ImportError:
        return tree
    for pid in list(tree):
        try:
            tree.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return tree
