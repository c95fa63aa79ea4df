"""A pool that dies leaves its servers running; the next pool on the same state dir
stops them at start, and never touches a process that merely reuses a recorded pid."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from modelpool import ModelPool, ModelSpec, ModelState
from modelpool.backends.pidfiles import PidFiles

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")

GB = 10**9
TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")
TAG = f"orphans-{os.getpid()}"

# A pool that loads a server and then dies at once, as a crash or kill -9 would.
CRASHING_POOL = """
import asyncio, os, sys
from modelpool import ModelPool, ModelSpec
spec = ModelSpec(id="llm", backend="process", memory=10**9, device="cpu", options={
    "command": [sys.executable, sys.argv[1], "--port", "${PORT}", "--tag", sys.argv[3]]})
async def main():
    pool = ModelPool([spec], budgets={"cpu": 2 * 10**9}, state_dir=sys.argv[2])
    await pool.start()
    await pool.load("llm")
    print("loaded", flush=True)
    os._exit(9)
asyncio.run(main())
"""


async def gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` has exited (a zombie waiting for pid 1 counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        await asyncio.sleep(0.05)
    return False


def spec() -> ModelSpec:
    command = [sys.executable, TINY, "--port", "${PORT}", "--tag", TAG]
    return ModelSpec(id="llm", backend="process", memory=GB, device="cpu",
                     options={"command": command})  # fmt: skip


async def test_orphans_of_a_crashed_pool_are_stopped_by_the_next_one(tmp_path: Path) -> None:
    crashed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHING_POOL, TINY, str(tmp_path), TAG],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert crashed.returncode == 9, crashed.stderr
    assert "loaded" in crashed.stdout
    [record] = PidFiles(tmp_path).records()
    assert psutil.pid_exists(record.pid)  # the server outlived its pool
    assert record.model_id == "llm"
    assert TINY in record.argv

    pool = ModelPool([spec()], budgets={"cpu": 2 * GB}, state_dir=tmp_path)
    async with pool:
        assert await gone(record.pid)
        assert PidFiles(tmp_path).records() == []
        async with pool.use("llm"):  # and this pool runs its own server
            [mine] = PidFiles(tmp_path).records()
            assert mine.pid != record.pid
    assert PidFiles(tmp_path).records() == []  # a clean stop leaves no record
    assert pool.state("llm") is ModelState.UNLOADED


async def test_a_reused_pid_is_not_touched(tmp_path: Path) -> None:
    bystander = await asyncio.create_subprocess_exec(  # leads its group, as a server would
        sys.executable, "-c", "import time; time.sleep(60)", start_new_session=True
    )
    try:
        folder = tmp_path / "processes"
        folder.mkdir()
        started = psutil.Process(bystander.pid).create_time()
        (folder / "llm.json").write_text(json.dumps({
            "model_id": "llm", "pid": bystander.pid, "pgid": bystander.pid,
            "argv": ["llama-server"], "started": started - 3600,  # not the same process
        }))  # fmt: skip
        pool = ModelPool([spec()], budgets={"cpu": 2 * GB}, state_dir=tmp_path)
        async with pool:
            assert bystander.returncode is None  # still running
            assert psutil.Process(bystander.pid).status() != psutil.STATUS_ZOMBIE
            assert PidFiles(tmp_path).records() == []
    finally:
        bystander.kill()
        await bystander.wait()
