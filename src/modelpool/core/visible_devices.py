"""How CUDA reads ``CUDA_VISIBLE_DEVICES``, and ``cuda:N``'s index.

Below the probes (which resolve ``cuda:N`` to a physical GPU) and the backends (which
tell each server they start which GPUs it may see): both must read the pool's own
``CUDA_VISIBLE_DEVICES`` the same way, so that ``cuda:N`` names one GPU for all of them.
Pure string handling; nothing here talks to a driver.
"""

from __future__ import annotations

import re

_CUDA = re.compile(r"^cuda:(\d+)$")
UUID_PREFIXES = ("GPU-", "MIG-")
"""How NVML writes a whole GPU's UUID and a MIG instance's (nvmlDeviceGetUUID)."""


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


__all__ = ["UUID_PREFIXES", "cuda_index", "parse_visible_devices"]
