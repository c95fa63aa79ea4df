"""Process groups and sessions: signal one, ask which members still live, wait for it to go.

A backend server starts in a new session (``start_new_session=True``), so its pid is
also its process group id and its session id, and every worker it forks (vLLM, SGLang)
stays in the group unless it leaves on purpose. A worker may move to a process group of
its own (``setpgid``, as shells and some launchers do) and still stay in the session;
only ``setsid`` takes it out of both. So the *members* of a server are the processes of
its group and of its session, and stopping the server signals them all.

A zombie (exited, not yet reaped) still counts for ``killpg(pgid, 0)``; orphans are
reaped by pid 1, which in some containers takes seconds. On Linux the members are read
from ``/proc`` and zombies are not counted: they hold no memory, port or file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

PROC = Path("/proc")
POLL = 0.05


def send(leader: int, signum: signal.Signals) -> bool:
    """Send ``signum`` to the leader's group and to members of its session outside the
    group; False when none of them exists."""
    sent = False
    try:
        os.killpg(leader, signum)
        sent = True
    except ProcessLookupError:
        pass
    for pid, group in _session_and_group(leader):
        if group != leader:  # the group had it already
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
                sent = True
    return sent


def live_members(leader: int) -> list[int] | None:
    """Pids of the members of the leader's group and session that are not zombies; None
    where that is unknowable.

    ``[]`` means they are all gone. Without ``/proc`` (not Linux), a group that still
    answers ``killpg(pgid, 0)`` gives None: alive, members unknown.
    """
    if not PROC.is_dir():
        try:
            os.killpg(leader, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass  # a member we may not signal: it still exists
        return None
    return [pid for pid, _ in _session_and_group(leader)]


def _session_and_group(leader: int) -> list[tuple[int, int]]:
    """``(pid, process group)`` of each live process in the leader's group or session,
    read from ``/proc`` (empty without it)."""
    if not PROC.is_dir():
        return []
    found: list[tuple[int, int]] = []
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 4 or fields[0] in ("Z", "X"):
            continue
        group, session = int(fields[2]), int(fields[3])
        if leader in (group, session):
            found.append((int(entry.name), group))
    return found


async def alive(leader: int) -> bool:
    """Whether any member still runs (``/proc`` is read off the loop)."""
    return await asyncio.to_thread(live_members, leader) != []


async def wait_gone(leader: int, timeout: float) -> bool:
    """Poll until no member runs; False if some still run after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await alive(leader):
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
