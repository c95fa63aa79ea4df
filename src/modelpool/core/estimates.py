"""Measured footprints remembered across restarts: what a model's next load reserves.

A model's first load reserves its configured ``memory`` (or its backend's estimate);
once a backend has measured it, the measurement is kept here, in a small JSON file
under the state dir, and wins from then on, including after a restart. Each entry
carries a fingerprint of the spec's backend, options and device, so changing any of
those forgets the old figure. Writes are atomic (a temporary file, then a rename), so
a crash never leaves half a file; an unreadable file is set aside and started afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from modelpool.config import ModelSpec
from modelpool.types import Bytes

log = logging.getLogger("modelpool.estimates")

FORMAT = 1


def fingerprint(spec: ModelSpec) -> str:
    """What the measurement depends on: the backend, its options and the device."""
    basis = json.dumps([spec.backend, spec.options, spec.device], sort_keys=True, default=str)
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


class EstimateStore:
    """Measured bytes per model id, in ``path`` (a JSON file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._entries: dict[str, dict[str, Any]] = self._read()

    def get(self, spec: ModelSpec) -> Bytes | None:
        entry = self._entries.get(spec.id)
        if entry is None or entry.get("fingerprint") != fingerprint(spec):
            return None
        value = entry.get("bytes")
        return value if isinstance(value, int) and value > 0 else None

    def record(self, spec: ModelSpec, measured: Bytes) -> None:
        entry = {"bytes": int(measured), "fingerprint": fingerprint(spec), "at": time.time()}
        if self._entries.get(spec.id, {}).get("bytes") == entry["bytes"]:
            return  # nothing new: spare the disk
        self._entries[spec.id] = entry
        self._write()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
                raise ValueError(f"not an estimates file of format {FORMAT}")
            return dict(data["models"])
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as error:
            aside = self.path.with_name(self.path.name + ".unreadable")
            log.warning("ignoring %s (%s); moved it to %s", self.path, error, aside)
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            return {}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": FORMAT, "models": self._entries}, indent=1, sort_keys=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".estimates-")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
