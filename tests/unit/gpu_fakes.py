"""Fakes of ``pynvml`` (nvidia-ml-py 13.x) and ``torch.cuda`` (torch 2.13) for unit tests.

No GPU here: these stand in for the libraries, and each behaves as the library's
source or documentation says (quoted where the behaviour matters). Errors are the real
``pynvml`` classes (the module imports without a driver: only ``nvmlInit`` loads it).

What they model:

* NVML numbers GPUs by PCI bus id; CUDA numbers the visible ones fastest first unless
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (CUDA Programming Guide, "CUDA Environment
  Variables": "FASTEST_FIRST causes CUDA to enumerate the available devices in fastest
  to slowest order using a simple heuristic. PCI_BUS_ID orders devices by PCI bus ID in
  ascending order"). A ``FakeCuda`` is given its devices in its own order.
* MIG: a parent GPU in MIG mode and its instances (``MIG-`` UUIDs). NVML reference,
  nvmlDeviceGetMemoryInfo_v2: "In MIG mode, if device handle is provided, the API
  returns aggregate information, only if the caller has appropriate privileges.
  Per-instance information can be queried by using specific MIG device handles."
  nvmlDeviceGetComputeRunningProcesses_v3 carries the same note; without those
  privileges the fake raises NVMLError_NoPermission (NVML_ERROR_NO_PERMISSION,
  "Insufficient Permissions" in pynvml's table). Its ``device`` may be "The device
  handle or MIG device handle".
* memory v2: ``used`` includes ``reserved`` (NVML reference R525, nvmlMemory_v2_t:
  "The nvmlMemory_v2_t::used amount also includes the nvmlMemory_v2_t::reserved
  amount"); v1's ``used`` is "Sum of Reserved and Allocated device memory".
* processes (v3): pynvml's ``nvmlDeviceGetComputeRunningProcesses`` is
  ``@throwOnVersionMismatch`` around ``_v3``: on a driver without the v3 entry point
  ``NVMLError_FunctionNotFound`` becomes ``NVMLLibraryMismatchError`` (a plain
  ``Exception``, not an ``NVMLError``). ``usedGpuMemory`` is None where NVML reports
  ``NVML_VALUE_NOT_AVAILABLE``. In a container the pids are the host's.
* a lost GPU: every call on it raises ``NVMLError_GpuIsLost``.
* torch.cuda: ``is_initialized`` says whether CUDA started in this process;
  ``mem_get_info`` is ``torch.cuda.cudart().cudaMemGetInfo(device)``, and the primary
  context of a device "is initialized at the first runtime function which requires an
  active context on this device" (CUDA C++ Programming Guide, "Initialization"): the
  fake adds a context's bytes to this process's NVML use.
  ``get_device_properties(i).uuid`` is a ``torch._C._CUuuid`` whose ``__str__`` is
  ``uuid_to_string(uuid.bytes)`` (torch/csrc/cuda/Module.cpp): 8-4-4-4-12 hex, without
  NVML's ``GPU-``/``MIG-`` prefix (the fake gives that string). ``empty_cache``
  "Release[s] all unoccupied cached memory currently held by the caching allocator so
  that those can be used in other GPU application and visible in nvidia-smi", and only
  ``if is_initialized()`` (torch/cuda/memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

# nvidia-ml-py (the `nvml` extra): error classes and constants only; without it the
# tests that use these fakes are skipped.
real = pytest.importorskip("pynvml")

GB = 10**9
MB = 10**6
CONTEXT_BYTES = 500 * MB
"""What a CUDA context costs on a device (typical on recent GPUs: 300-600 MB)."""


def error(code: int) -> Exception:
    """The NVMLError subclass pynvml raises for ``code`` (NVMLError.__new__ maps it)."""
    failure: Exception = real.NVMLError(code)
    return failure


@dataclass(eq=False)
class FakeGpu:
    """One GPU (or one MIG instance) as NVML sees it; also the handle NVML returns."""

    uuid: str
    pci_bus_id: str = "00000000:00:00.0"
    name: str = "NVIDIA H100 80GB HBM3"
    total: int = 80 * GB
    reserved: int = 500 * MB
    processes: dict[int, int | None] = field(default_factory=dict)
    """pid -> bytes (None: NVML_VALUE_NOT_AVAILABLE)."""
    other_used: int = 0
    """Allocated bytes no listed process accounts for."""
    mig_capable: bool = True
    mig_enabled: bool = False
    instances: list[FakeGpu] = field(default_factory=list)
    is_instance: bool = False
    lost: bool = False

    @property
    def allocated(self) -> int:
        return self.other_used + sum(used or 0 for used in self.processes.values())


def instance(uuid: str, total: int, processes: dict[int, int | None] | None = None) -> FakeGpu:
    return FakeGpu(
        uuid, total=total, reserved=0, processes=dict(processes or {}), mig_capable=False,
        is_instance=True,
    )  # fmt: skip


class FakeNvml:
    """The ``pynvml`` module's surface that the probe uses."""

    NVMLError = real.NVMLError
    NVMLLibraryMismatchError = real.NVMLLibraryMismatchError
    nvmlMemory_v2 = real.nvmlMemory_v2
    NVML_DEVICE_MIG_ENABLE = real.NVML_DEVICE_MIG_ENABLE

    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        has_v3_processes: bool = True,
        has_memory_v2: bool = True,
        privileged: bool = False,
    ) -> None:
        # NVML's index order is PCI bus order, whatever order the test lists them in.
        self.gpus = sorted(gpus, key=lambda gpu: gpu.pci_bus_id)
        self.has_v3_processes = has_v3_processes
        self.has_memory_v2 = has_memory_v2
        self.privileged = privileged
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)  # MIG instances are not counted (nvmlDeviceGetCount_v2)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise error(real.NVML_ERROR_INVALID_ARGUMENT)
        return self._alive(self.gpus[index])

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        for gpu in self.gpus:
            for candidate in (gpu, *gpu.instances):
                if candidate.uuid == uuid:  # the whole UUID, prefix included
                    return self._alive(candidate)
        raise error(real.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return self._alive(handle).uuid

    def nvmlDeviceIsMigDeviceHandle(self, handle: FakeGpu) -> int:
        return int(handle.is_instance)

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        if not self._alive(handle).mig_capable:
            raise error(real.NVML_ERROR_NOT_SUPPORTED)
        mode = real.NVML_DEVICE_MIG_ENABLE if handle.mig_enabled else real.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu, version: int | None = None) -> Any:
        gpu = self._alive(handle)
        if gpu.mig_enabled and not self.privileged:
            raise error(real.NVML_ERROR_NO_PERMISSION)
        used = gpu.reserved + gpu.allocated
        if not version:
            return SimpleNamespace(total=gpu.total, free=gpu.total - used, used=used)
        if not self.has_memory_v2:  # no nvmlDeviceGetMemoryInfo_v2 entry point
            raise error(real.NVML_ERROR_FUNCTION_NOT_FOUND)
        return SimpleNamespace(
            version=version, total=gpu.total, reserved=gpu.reserved, free=gpu.total - used,
            used=used,
        )  # fmt: skip

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        if not self.has_v3_processes:
            raise real.NVMLLibraryMismatchError(
                "Unversioned function called and the pyNVML version does not match the "
                "NVML lib version."
            )
        return self.nvmlDeviceGetComputeRunningProcesses_v2(handle)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: FakeGpu) -> list[Any]:
        gpu = self._alive(handle)
        if gpu.mig_enabled and not self.privileged:
            raise error(real.NVML_ERROR_NO_PERMISSION)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes.items()]

    @staticmethod
    def _alive(gpu: FakeGpu) -> FakeGpu:
        if gpu.lost:
            raise error(real.NVML_ERROR_GPU_IS_LOST)
        return gpu


class FakeCuda:
    """``torch.cuda`` of one process (``pid``), over ``devices`` in CUDA's own order."""

    def __init__(self, devices: list[FakeGpu], pid: int, *, initialized: bool = False) -> None:
        self.devices = devices
        self.pid = pid
        self.initialized = initialized
        self.contexts: set[int] = set()
        self.allocated: dict[int, int] = {}
        self.reserved: dict[int, int] = {}
        self.empty_cache_calls = 0

    def is_available(self) -> bool:
        return bool(self.devices)  # counts devices; starts nothing

    def is_initialized(self) -> bool:
        return self.initialized

    def device_count(self) -> int:
        return len(self.devices)

    def get_device_properties(self, index: int) -> Any:
        self.initialized = True  # _lazy_init(); reads properties, makes no context
        gpu = self.devices[index]
        uuid = gpu.uuid.split("-", 1)[1]  # torch prints the bytes, no GPU-/MIG- prefix
        return SimpleNamespace(uuid=uuid, total_memory=gpu.total, name=gpu.name)

    def _context(self, index: int) -> None:
        self.initialized = True
        if index not in self.contexts:
            self.contexts.add(index)
            self._sync_nvml(index)

    def _sync_nvml(self, index: int) -> None:
        """What NVML lists for this process: its context plus the allocator's blocks."""
        held = (CONTEXT_BYTES if index in self.contexts else 0) + self.reserved.get(index, 0)
        self.devices[index].processes[self.pid] = held

    def mem_get_info(self, index: int) -> tuple[int, int]:
        self._context(index)  # cudaMemGetInfo needs a context on the device
        gpu = self.devices[index]
        return gpu.total - gpu.reserved - gpu.allocated, gpu.total

    def allocate(self, index: int, nbytes: int, cached: int = 0) -> None:
        """Tensors of ``nbytes`` made on device ``index``, with ``cached`` more bytes kept
        by the caching allocator (freed blocks it has not returned)."""
        self._context(index)
        self.allocated[index] = self.allocated.get(index, 0) + nbytes
        self.reserved[index] = self.reserved.get(index, 0) + nbytes + cached
        self._sync_nvml(index)

    def memory_allocated(self, index: int) -> int:
        return self.allocated.get(index, 0)

    def memory_reserved(self, index: int) -> int:
        return self.reserved.get(index, 0) if self.initialized else 0

    def max_memory_allocated(self, index: int) -> int:
        return self.allocated.get(index, 0)

    def empty_cache(self) -> None:
        self.empty_cache_calls += 1
        if not self.initialized:  # "if is_initialized(): torch._C._cuda_emptyCache()"
            return
        for index in list(self.reserved):
            self.reserved[index] = self.allocated.get(index, 0)
            self._sync_nvml(index)


def fake_torch(cuda: FakeCuda) -> Any:
    """An object standing for the ``torch`` module, with ``cuda`` as its CUDA part."""
    return SimpleNamespace(cuda=cuda)


class FakeCudart:
    """``torch.cuda.cudart()``: the CUDA runtime calls the warm tier makes.

    CUDA Runtime API, cudaHostRegister: "Page-locks the memory range specified by ptr
    and size and maps it for the device(s)"; it returns cudaSuccess or an error such as
    cudaErrorMemoryAllocation (2) or cudaErrorNotSupported (801), and like every runtime
    error it is also the thread's last error until cudaGetLastError "resets it to
    cudaSuccess" (else the next kernel launch's error check reports it). torch 2.13 binds
    no cudaGetLastError; this fake offers it where the runtime library would.
    """

    def __init__(self, fail_with: int = 0) -> None:
        self.fail_with = fail_with
        self.last_error = 0
        self.registered: dict[int, int] = {}
        self.registrations = 0

    def cudaHostRegister(self, pointer: int, nbytes: int, flags: int) -> int:
        if self.fail_with:
            self.last_error = self.fail_with
            return self.fail_with
        self.registrations += 1
        self.registered[pointer] = nbytes
        return 0

    def cudaHostUnregister(self, pointer: int) -> int:
        self.registered.pop(pointer, None)
        return 0

    def cudaGetLastError(self) -> int:
        error, self.last_error = self.last_error, 0
        return error
