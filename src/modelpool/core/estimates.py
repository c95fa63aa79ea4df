"""Measured footprints remembered across restarts: what a model's next load reserves.

A model's first load reserves its configured ``memory`` (or its backend's estimate);
once a backend has measured it, the measurement is kept here, in a small JSON file
under the state dir, and wins from then on, including after a restart. Each entry
carries a fingerprint of the spec's backend, options and device, so changing any of
those forgets the old figure. The file is a ``StateFile`` (kind ``"estimates"``): written
atomically with the previous copy kept as ``.bak``; an unreadable file is set aside and
the backup used, or else started afresh. A file from before the envelope
(``{"format": 1, "models": ...}``) is still read, and rewritten in the new form on the
next measurement. Failing to save is logged, never raised: a model that loaded fine
must not fail because its figure could not be remembered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from modelpool.config import ModelSpec
from modelpool.core.statefile import StateFile
from modelpool.errors import StateError
from modelpool.types import Bytes

log = logging.getLogger("modelpool.estimates")

KIND = "estimates"
VERSION = 1
LEGACY_FORMAT = 1  # the top-level "format" of files written before StateFile


def fingerprint(spec: ModelSpec) -> str:
    """What the measurement depends on: the backend, its options and the device."""
    basis = json.dumps([spec.backend, spec.options, spec.device], sort_keys=True, default=str)
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


class EstimateStore:
    """Measured bytes per model id, in ``path`` (a JSON file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._file = StateFile(self.path, KIND, VERSION, legacy=_legacy, check=_check)
        self._entries: dict[str, dict[str, Any]] = dict(self._file.load() or {})
        self._report()

    def get(self, spec: ModelSpec) -> Bytes | None:
        entry = self._entries.get(spec.id)
        if entry is None or entry.get("fingerprint") != fingerprint(spec):
            return None
        value = entry.get("bytes")
        return value if isinstance(value, int) and value > 0 else None

    def record(self, spec: ModelSpec, measured: Bytes) -> None:
        if measured <= 0:
            return  # no model takes nothing: a failed measurement, never a footprint
        entry = {"bytes": int(measured), "fingerprint": fingerprint(spec), "at": time.time()}
        if self._entries.get(spec.id, {}).get("bytes") == entry["bytes"]:
            return  # nothing new: spare the disk
        self._entries[spec.id] = entry
        try:
            self._file.save(self._entries)
        except StateError as error:
            log.warning("measured footprint of %r not remembered: %s", spec.id, error)

    def _report(self) -> None:
        for warning in self._file.warnings:
            log.warning("%s", warning)
        self._file.warnings.clear()


def plausible_footprint(measured: Bytes | None, device_total: Bytes | None) -> bool:
    """Whether a measured footprint can be booked and remembered: known, above 0, and no
    more than the device holds (when its total is known). Anything else keeps the
    estimate: a 0 saved as the footprint would make every later load reserve nothing."""
    if measured is None or measured <= 0:
        return False
    return device_total is None or measured <= device_total


def _legacy(document: dict[str, Any]) -> Any | None:
    """The entries of a file written before StateFile, or None if it is not one."""
    if document.get("format") == LEGACY_FORMAT and isinstance(document.get("models"), dict):
        return document["models"]
    return None


def _check(data: Any) -> None:
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError("expected an object of model id -> entry objects")
