"""Which physical GPU ``cuda:N`` is: CUDA's numbering set against NVML's.

NVML numbers GPUs by PCI bus id and ignores ``CUDA_VISIBLE_DEVICES``; CUDA numbers
only the visible ones, fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; under
MIG, NVML's index names the parent GPU while CUDA runs on one of its instances. So
``cuda:N`` is never taken to be NVML index N: it is resolved to a UUID where one is
known (torch's device properties, or a UUID in ``CUDA_VISIBLE_DEVICES``), else to the
N-th visible entry counted in PCI order, which is the order of every process the pool
starts (the process backend sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, and the torch
backend sets it for the pool's own process before CUDA starts).
"""

from __future__ import annotations

import sys
from typing import Any

from modelpool.core.visible_devices import UUID_PREFIXES, cuda_index, parse_visible_devices

__all__ = [
    "PCI_ORDER",
    "UUID_PREFIXES",
    "bare_uuid",
    "cuda_index",
    "parse_visible_devices",
    "torch_cuda_in_use",
    "torch_uuid",
]

PCI_ORDER = "PCI_BUS_ID"


def torch_uuid(cuda: Any, index: int) -> str | None:
    """The UUID ``torch.cuda`` gives device ``index`` (no ``GPU-`` prefix); ``cuda`` is
    what ``torch_cuda_in_use`` returned, None where CUDA has not started here."""
    if cuda is None:
        return None
    try:
        if index >= int(cuda.device_count()):
            return None
        return str(cuda.get_device_properties(index).uuid)
    except Exception:  # a broken CUDA state: no UUID, the caller resolves otherwise
        return None


def torch_cuda_in_use() -> Any:
    """``torch.cuda`` when torch is imported and CUDA initialized in this process; None
    otherwise (torch is never imported here: that alone takes seconds)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None:
        return None
    try:
        return cuda if cuda.is_initialized() else None
    except Exception:
        return None


def bare_uuid(uuid: str) -> str:
    """A UUID without NVML's ``GPU-``/``MIG-`` prefix, lower case (torch's form)."""
    for prefix in UUID_PREFIXES:
        if uuid.startswith(prefix):
            return uuid[len(prefix) :].lower()
    return uuid.lower()
