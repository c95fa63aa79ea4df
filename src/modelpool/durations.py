"""Durations as people write them: ``600``, ``"600s"``, ``"10m"``, ``"1h30m"``, ``"500ms"``.

A bare number means seconds. Units may be combined, largest first or not
(``"1h30m"`` and ``"30m1h"`` both mean 5400 seconds); ``d`` is a day of 24 hours.
"""

from __future__ import annotations

import math
import re

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
# "ms" is listed before "m" and "s" so that "500ms" is not read as 500 minutes + "s".
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_EXPECTED = "expected a duration such as 600, '10m' or '1h'"


def parse_duration(value: int | float | str) -> float:
    """Return ``value`` in seconds; raise ``ValueError`` saying what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"{_EXPECTED}, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{_EXPECTED}, got {value!r}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    text = value.strip().lower().replace(" ", "")
    if _NUMBER.match(text):
        return float(text)
    if not _WHOLE.match(text):
        raise ValueError(f"{_EXPECTED}, got {value!r}")
    return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Short human form such as ``1h30m``, ``45s`` or ``250ms``; inverse of the parser."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    if abs(seconds - whole) > 1e-9:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
