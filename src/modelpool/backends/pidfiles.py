"""Records of running server processes, so a pool that died does not leave them behind.

Each started server gets ``<state_dir>/processes/<model>.json`` (written atomically)
with its pid, process group, command line and start time; a clean stop removes it.
When a pool starts, any record left by an earlier run is an orphan: if a process with
that pid still runs *and* started at the recorded time (so the pid was not reused by
something else), its whole group is stopped; the record is then removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from modelpool.backends import procgroup

log = logging.getLogger("modelpool.process")

START_TIME_TOLERANCE = 1.0
"""Seconds by which a recorded and a live start time may differ and be the same process."""


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    model_id: str
    pid: int
    pgid: int
    argv: list[str]
    started: float
    """The process's start time (epoch seconds) as the OS reports it."""


class PidFiles:
    """The records of one state dir."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.folder = Path(state_dir).expanduser() / "processes"

    def write(self, model_id: str, pid: int, pgid: int, argv: list[str]) -> None:
        try:
            started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            return  # gone already: nothing to record
        record = ProcessRecord(model_id, pid, pgid, argv, started)
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".record-")
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(asdict(record), file)
            os.replace(temporary, self._path(model_id))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def remove(self, model_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(model_id).unlink()

    def records(self) -> list[ProcessRecord]:
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                found.append(ProcessRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as error:
                log.warning("ignoring unreadable process record %s: %s", path, error)
                path.unlink(missing_ok=True)
        return found

    async def reap(self, grace: float = 5.0) -> list[ProcessRecord]:
        """Stop every recorded server that still runs; return the ones that were stopped."""
        reaped = []
        for record in self.records():
            if _still_running(record):
                log.warning(
                    "stopping orphan server of model %r left by an earlier run (pid %d)",
                    record.model_id, record.pid,
                )  # fmt: skip
                procgroup.send(record.pgid, signal.SIGTERM)
                if not await procgroup.wait_gone(record.pgid, grace):
                    procgroup.send(record.pgid, signal.SIGKILL)
                    await procgroup.wait_gone(record.pgid, grace)
                reaped.append(record)
            self.remove(record.model_id)
        return reaped

    def _path(self, model_id: str) -> Path:
        return self.folder / f"{model_id}.json"


def _still_running(record: ProcessRecord) -> bool:
    try:
        process = psutil.Process(record.pid)
        same = abs(process.create_time() - record.started) <= START_TIME_TOLERANCE
        return same and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
