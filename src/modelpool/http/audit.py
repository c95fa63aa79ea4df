"""``AuditLog``: every operation that changes the server, one JSON line each in
``<state_dir>/audit.log`` (seed 003: "audit all switching operations").

One entry::

    {"time": "2026-12-07T11:30:00.125Z", "operation": "load",
     "caller": {"address": "10.0.0.7", "key": "3f2a9c0d41be"},
     "request": {"model": "smollm2", "wait": "true"},
     "outcome": "error", "status": 503, "error": "..."}

An operation whose request does not say what it did adds a ``result`` (a config
reload's diff: models added, removed, reloaded, updated, settings changed).

The caller's API key is never written: ``key`` is its fingerprint, the first 12 hex
digits of its SHA-256 (enough to tell an operator's keys apart, useless to guess one),
or ``"none"`` when the request carried no key.

Each line is one ``os.write`` to a file opened in append mode, so lines never
interleave and a crash (or a full disk) can cut only the last line short; the writer
starts on a fresh line when it finds the file ending in the middle of one, and the
reader skips any line it cannot parse. Past ``max_bytes`` the file is rotated:
``audit.log`` becomes ``audit.log.1``, which becomes ``audit.log.2``..., up to ``keep``
old files.

A write that fails (disk full, a folder it may not write) never fails the operation:
it is counted (``failures``, and ``on_failure`` for the server's metrics) and logged
once, then once more when writing works again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelpool.http.errors import bounded

log = logging.getLogger("modelpool.audit")

AUDIT_FILE = "audit.log"
DEFAULT_MAX_BYTES = 10 * 1000**2
DEFAULT_KEEP = 5
ERROR_LIMIT = 1000
"""Characters of an error message an entry keeps."""
NO_KEY = "none"


def fingerprint(key: bytes | str | None) -> str:
    """What the audit log says of an API key: 12 hex digits of its SHA-256, or "none"."""
    if not key:
        return NO_KEY
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()[:12]


@dataclass(frozen=True)
class Caller:
    """Who asked: the remote address and the fingerprint of the key they sent."""

    address: str
    key: str

    @classmethod
    def of(cls, address: str | None, key: bytes | str | None) -> Caller:
        return cls(address or "unknown", fingerprint(key))


class AuditLog:
    """Appends one JSON line per operation to ``path``; ``recent`` reads them back."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
        clock: Callable[[], float] = time.time,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """``clock``: seconds since the epoch (``time.time``), written as UTC.
        ``on_failure``: called once per failed write (the server counts them)."""
        if max_bytes < 1 or keep < 0:
            raise ValueError(f"max_bytes must be >= 1 and keep >= 0, got {max_bytes}, {keep}")
        self.path = Path(path)
        self.max_bytes, self.keep = max_bytes, keep
        self._clock, self._on_failure = clock, on_failure
        self.failures = 0
        """Writes that failed since the start."""
        self._failing = False

    def record(
        self,
        operation: str,
        caller: Caller,
        request: Mapping[str, Any],
        status: int,
        error: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one entry; never raises (a failure is counted and logged). ``result``:
        what the operation did, when the request does not say it (a reload's diff)."""
        entry: dict[str, Any] = {
            "time": _iso(self._clock()),
            "operation": operation,
            "caller": {"address": caller.address, "key": caller.key},
            "request": dict(request),
            "outcome": "ok" if status < 400 else "error",
            "status": status,
        }
        if status >= 400:
            entry["error"] = bounded(error or "", ERROR_LIMIT)
        if result is not None:
            entry["result"] = dict(result)
        try:
            line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
            self._append(line.encode())
        except (OSError, ValueError) as problem:
            self._failed(problem)
            return
        if self._failing:
            self._failing = False
            log.warning("the audit log %s is written again (%d failed)", self.path, self.failures)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first, across the rotated files; a
        damaged line is skipped. Reads files: call it off the event loop."""
        found: list[dict[str, Any]] = []
        for path in self.files():
            for entry in _entries_backwards(path):
                found.append(entry)
                if len(found) >= limit:
                    return found
        return found

    def files(self) -> list[Path]:
        """The log and its rotated files, newest first (those that exist)."""
        paths = [self.path, *(self._rotated(n) for n in range(1, self.keep + 1))]
        return [path for path in paths if path.is_file()]

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            size = os.fstat(fd).st_size
            if size and size + len(line) > self.max_bytes:
                os.close(fd)
                fd = -1
                self._rotate()
                fd = self._open()
            elif size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # the last line was cut short: never join onto it
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"wrote {written} of {len(line)} bytes (is the disk full?)")
        finally:
            if fd >= 0:
                os.close(fd)

    def _open(self) -> int:
        # O_APPEND: each write lands whole at the end, whoever else appends.
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)

    def _rotate(self) -> None:
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
            return
        for n in range(self.keep - 1, 0, -1):
            older = self._rotated(n)
            if older.exists():
                os.replace(older, self._rotated(n + 1))
        os.replace(self.path, self._rotated(1))

    def _rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _failed(self, problem: Exception) -> None:
        self.failures += 1
        if self._on_failure is not None:
            self._on_failure()
        if not self._failing:
            self._failing = True
            log.error(
                "cannot write the audit log %s: %s; operations go on, unaudited, until it "
                "can be written (modelpool_audit_write_failures_total counts them)",
                self.path,
                problem,
            )


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _entries_backwards(path: Path) -> Iterator[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except OSError as problem:
        log.warning("cannot read the audit log %s: %s", path, problem)
        return
    for line in reversed(data.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:  # cut short by a crash, or not ours: skip it
            continue
        if isinstance(entry, dict):
            yield entry
