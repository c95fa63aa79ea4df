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

import re
import sys
from typing import Any

_CUDA = re.compile(r"^cuda:(\d+)$")
UUID_PREFIXES = ("GPU-", "MIG-")
"""How NVML writes a whole GPU's UUID and a MIG instance's (nvmlDeviceGetUUID)."""
PCI_ORDER = "PCI_BUS_ID"


def cuda_index(device: str) -> int | None:
    """``3`` for ``"cuda:3"``; None for any other device."""
    match = _CUDA.match(device)
    return int(match.group(1)) if match else None


def parse_visible_devices(value: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` read as CUDA reads it; None when it is not set (all
    devices visible). Entries are ordinals (``"3"``) or UUIDs (``"GPU-..."``, ``"MIG-..."``).

    Mirrors torch's ``torch.cuda._parse_visible_devices``: a list starting with ``GPU-``
    or ``MIG-`` is a list of UUIDs, cut at the first entry without that prefix; otherwise
    each entry is read like ``strtoul`` (``"1gpu2"`` is 1) and a negative or unreadable
    entry ends the list; a repeated entry makes the list empty (no device visible).
    """
    if value is None:
        return None
    for prefix in UUID_PREFIXES:
        if value.startswith(prefix):
            uuids: list[str] = []
            for entry in value.split(","):
                if entry in uuids:
                    return []
                if not entry.startswith(prefix):
                    break
                uuids.append(entry)
            return uuids
    ordinals: list[str] = []
    for entry in value.split(","):
        match = re.match(r"^\s*\+?(\d+)", entry)
        if match is None:
            break
        ordinal = str(int(match.group(1)))
        if ordinal in ordinals:
            return []
        ordinals.append(ordinal)
    return ordinals


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
