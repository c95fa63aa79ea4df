"""Sizes as people write them: ``"6GB"``, ``"512MiB"``, ``"1.5 GB"``, or plain bytes.

Decimal suffixes (KB, MB, GB, TB) are powers of 1000 and binary ones (KiB, MiB, GiB,
TiB) powers of 1024, as on a disk label and in ``nvidia-smi`` respectively.
"""

from __future__ import annotations

import re

from modelpool.types import Bytes

_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | float | str) -> Bytes:
    """Return ``value`` in bytes; raise ``ValueError`` saying what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 6GB or 512MiB, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value!r}")
        return int(value)
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"expected a size such as 6GB, 512MiB or 1000000, got {value!r}")
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower() or "b")
    if factor is None:
        known = ", ".join(u.upper().replace("I", "i") for u in _UNITS)
        raise ValueError(f"unknown size unit {unit!r} in {value!r}; use one of {known}")
    return int(float(number) * factor)


def format_size(size: Bytes) -> str:
    """Human form with binary units, e.g. ``1.5 GiB``; exact for small values."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
