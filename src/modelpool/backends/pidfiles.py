"""Records of running server processes, so a pool that died does not leave them behind.

Each server is recorded the moment it is spawned, before it is ready (a server that
takes ten minutes to load its weights is the one most worth reaping), in
``<state_dir>/processes/<model>.<pid>.json`` with its pid, process group, command line
and start time. The record is written to a temporary file and renamed into place, so
it is either whole or absent; a stop that leaves no process behind removes it. No
fsync: a record matters only after the pool's process died, and the OS still holds
what it wrote; after a crash of the machine itself no server is left to reap.

When a pool starts, any record left by an earlier run is an orphan. Its server's
*members* are the live processes of its process group and session (the recorded pid
leads both: see ``procgroup``), whether or not the main process still runs, since a
main process that died may have left its workers holding memory. A member counts only
if it started no earlier than the recorded server, and nothing is touched when the
recorded pid now belongs to a process that started at another time: the pid was
reused, so the group and session it led are gone (Linux hands out no pid that is still
some live process's group or session id). The members get SIGTERM, then SIGKILL after
a grace period; the record is then removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from modelpool.backends import procgroup

log = logging.getLogger("modelpool.process")

START_TIME_TOLERANCE = 1.0
"""Seconds by which a recorded and a live start time may differ and be the same process."""
REAP_GRACE = 5.0
"""Seconds orphans get between SIGTERM and SIGKILL, and after SIGKILL to vanish."""
POLL = 0.05
TEMPORARY_PREFIX = ".record-"


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

    def write(self, model_id: str, pid: int, pgid: int, argv: list[str]) -> ProcessRecord | None:
        """Record a server just spawned; None if it is gone already (nothing to record).

        Raises OSError when the record cannot be written."""
        try:
            started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            return None
        record = ProcessRecord(model_id, pid, pgid, argv, started)
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=TEMPORARY_PREFIX)
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(asdict(record), file)
            os.replace(temporary, self._path(model_id, pid))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return record

    def remove(self, model_id: str, pid: int) -> None:
        """Forget the server ``pid`` of ``model_id`` (another load of the model keeps its own)."""
        with contextlib.suppress(FileNotFoundError):
            self._path(model_id, pid).unlink()

    def records(self) -> list[ProcessRecord]:
        return [record for _, record in self._read()]

    async def reap(self, grace: float = REAP_GRACE) -> list[ProcessRecord]:
        """Stop every process of every recorded server; return the records whose server
        still had some, and remove all records (and any temporary file a write left)."""
        found = [(path, record, _members(record)) for path, record in self._read()]
        for _, record, members in found:
            if members:
                how = (
                    "running" if record.pid in {m.pid for m in members}
                    else f"its main process gone, {len(members)} worker(s) left"
                )  # fmt: skip
                log.warning(
                    "stopping the server of model %r left by an earlier run (pid %d, %s)",
                    record.model_id, record.pid, how,
                )  # fmt: skip
        left = [member for _, _, members in found for member in members]
        for signum in (signal.SIGTERM, signal.SIGKILL):
            for member in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.send_signal(signum)  # psutil checks it is still the same process
            left = await _until_gone(left, grace)
            if not left:
                break
        if left:
            log.error("orphan processes still run after SIGKILL: %s", [p.pid for p in left])
        for path, _, _ in found:
            path.unlink(missing_ok=True)
        for temporary in self.folder.glob(f"{TEMPORARY_PREFIX}*"):
            temporary.unlink(missing_ok=True)
        return [record for _, record, members in found if members]

    def _read(self) -> list[tuple[Path, ProcessRecord]]:
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                found.append((path, ProcessRecord(**json.loads(path.read_text()))))
            except (OSError, ValueError, TypeError) as error:
                log.warning("ignoring unreadable process record %s: %s", path, error)
                path.unlink(missing_ok=True)
        return found

    def _path(self, model_id: str, pid: int) -> Path:
        return self.folder / f"{model_id}.{pid}.json"


def _members(record: ProcessRecord) -> list[psutil.Process]:
    """The live processes of the recorded server's group and session (see the module)."""
    try:
        main = psutil.Process(record.pid)
        if abs(main.create_time() - record.started) > START_TIME_TOLERANCE:
            return []  # the pid was reused: what it led is gone
    except psutil.NoSuchProcess:
        pass  # the main process died; its workers may not have
    members = procgroup.live_members(record.pgid)
    if members is None:  # no /proc to list them: only the main process is known
        members = [record.pid]
    found = []
    for pid in members:
        if pid == os.getpid():
            continue
        try:
            member = psutil.Process(pid)
            if member.create_time() >= record.started - START_TIME_TOLERANCE:
                found.append(member)
        except psutil.NoSuchProcess:
            continue
    return found


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _until_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until none of ``processes`` runs (zombies count as gone); those still running."""
    deadline = time.monotonic() + timeout
    # No event tells when a process that is not our child exits: poll.
    while (left := [p for p in processes if _running(p)]) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(POLL)
    return left
