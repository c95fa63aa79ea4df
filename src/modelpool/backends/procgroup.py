"""Process groups: signal one, ask which of its members still live, wait for it to go.

A backend server starts in a new session (``start_new_session=True``), so its pid is
also its process group id, and every worker it forks (vLLM, SGLang) stays in the group
unless it leaves on purpose. Stopping the group stops them all.

A zombie (exited, not yet reaped) still counts for ``killpg(pgid, 0)``; orphans are
reaped by pid 1, which in some containers takes seconds. On Linux the members are read
from ``/proc`` and zombies are not counted: they hold no memory, port or file.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

PROC = Path("/proc")
POLL = 0.05


def send(pgid: int, signum: signal.Signals) -> bool:
    """Send ``signum`` to the group; False when the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def live_members(pgid: int) -> list[int] | None:
    """Pids of the group's members that are not zombies; None where that is unknowable.

    ``[]`` means the group is gone. Without ``/proc`` (not Linux), a group that still
    answers ``killpg(pgid, 0)`` gives None: alive, members unknown.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass  # a member we may not signal: it still exists
    if not PROC.is_dir():
        return None
    members: list[int] = []
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


async def alive(pgid: int) -> bool:
    """Whether any member of the group still runs (``/proc`` is read off the loop)."""
    return await asyncio.to_thread(live_members, pgid) != []


async def wait_gone(pgid: int, timeout: float) -> bool:
    """Poll until no member of the group runs; False if some still run after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await alive(pgid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(POLL)
    return True


async def exit_code(process: asyncio.subprocess.Process, poll: float = POLL) -> int:
    """The main process's exit code, as soon as it has exited.

    Not ``process.wait()``: on Python 3.11 that returns only once the output pipe is
    closed too, and a worker that inherited the pipe keeps it open after the main
    process died. ``returncode`` is set by asyncio's child watcher at the exit itself,
    and no public event tells when: so poll it (cheap, and only while someone waits).
    """
    while (code := process.returncode) is None:  # noqa: ASYNC110 (no event to await)
        await asyncio.sleep(poll)
    return code


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL (signal 9)``."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "an unknown signal"
    return f"was killed by {name} (signal {-code})"
