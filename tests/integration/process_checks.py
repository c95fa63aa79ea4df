"""Whether a process a test started has exited: what the process tests share. A zombie
counts as exited (an orphan waits for pid 1 to reap it; nothing of it runs)."""

from __future__ import annotations

import asyncio
import time

import psutil


def gone(pid: int) -> bool:
    """No such process, or only its zombie (or its dead entry)."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


async def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` is ``gone``; False if it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)  # another process's exit: no event to wait on here
    return True
