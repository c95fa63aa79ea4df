"""A pool that dies leaves its servers running; the next pool on the same state dir
stops them at start (a server still loading, and the workers of one whose main process
died, too), and never touches a process that merely reuses a recorded pid."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from process_checks import wait_gone

from modelpool import LoadFailed, ModelPool, ModelSpec, ModelState
from modelpool.backends.pidfiles import PidFiles

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")

GB = 10**9
TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")
TAG = f"orphans-{os.getpid()}"

# A pool that loads a server and then dies at once, as a crash or kill -9 would.
# Arguments: tiny_server.py, state dir, tag, then flags for the server.
CRASHING_POOL = """
import asyncio, os, sys
from modelpool import ModelPool, ModelSpec
spec = ModelSpec(id="llm", backend="process", memory=10**9, device="cpu", options={
    "command": [sys.executable, sys.argv[1], "--port", "${PORT}", "--tag", sys.argv[3],
                *sys.argv[4:]]})
async def main():
    pool = ModelPool([spec], budgets={"cpu": 2 * 10**9}, state_dir=sys.argv[2])
    await pool.start()
    await pool.load("llm")
    print("loaded", flush=True)
    os._exit(9)
asyncio.run(main())
"""

# A pool whose one model is still loading (llama.cpp's server, say, answers 503 on
# /health while it reads the weights) when the test kills it with SIGKILL.
LOADING_POOL = """
import asyncio, sys
from modelpool import ModelPool, ModelSpec
spec = ModelSpec(id="llm", backend="process", memory=10**9, device="cpu", options={
    "command": [sys.executable, sys.argv[1], "--port", "${PORT}", "--tag", sys.argv[3],
                "--never-healthy"],
    "ready_timeout": 600})
async def main():
    pool = ModelPool([spec], budgets={"cpu": 2 * 10**9}, state_dir=sys.argv[2])
    await pool.start()
    await pool.load("llm")
asyncio.run(main())
"""

# A server's main process that starts two workers, one in its process group and one
# that moved to a group of its own (still in the session), prints their pids, and
# exits when its stdin closes, leaving them running.
LEADER = """
import subprocess, sys
sleeper = [sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]]
same_group = subprocess.Popen(sleeper, stdout=subprocess.DEVNULL)
own_group = subprocess.Popen(sleeper, stdout=subprocess.DEVNULL, process_group=0)
print(same_group.pid, own_group.pid, flush=True)
sys.stdin.read()
"""


def tagged() -> list[int]:
    """Pids of this run's live processes (they carry ``TAG`` on their command line)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if TAG in (process.info["cmdline"] or []) and process.info["status"] != "zombie":
            found.append(process.pid)
    return found


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Kill what a failing test left running, so that one failure stays one."""
    yield
    for pid in tagged():
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


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
        assert await wait_gone(record.pid)
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


async def crash_a_pool_that_loaded(tmp_path: Path, *flags: str) -> int:
    """Run CRASHING_POOL with the server's ``flags``; the pid of the server it left."""
    crashed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHING_POOL, TINY, str(tmp_path), TAG, *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert crashed.returncode == 9, crashed.stderr
    [record] = PidFiles(tmp_path).records()
    return record.pid


async def start_leader() -> tuple[asyncio.subprocess.Process, list[int]]:
    """LEADER in a session of its own, and the pids of its two workers."""
    leader = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LEADER, TAG,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert leader.stdout is not None
    return leader, [int(pid) for pid in (await leader.stdout.readline()).split()]


async def end(leader: asyncio.subprocess.Process) -> int:
    """Let LEADER exit (its workers stay); its exit code."""
    assert leader.stdin is not None
    leader.stdin.close()
    return await leader.wait()


async def answers_health(port: int, timeout: float = 20.0) -> int:
    """The status of ``GET /health`` on ``port`` once something answers there."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, f"nothing answered on port {port}"
            await asyncio.sleep(0.05)
            continue
        writer.write(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        status = int((await reader.readline()).split()[1])
        writer.close()
        await writer.wait_closed()
        return status


async def test_a_server_still_loading_when_its_pool_is_killed_is_stopped_by_the_next_one(
    tmp_path: Path,
) -> None:
    dying = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOADING_POOL, TINY, str(tmp_path), TAG
    )
    deadline = time.monotonic() + 30
    while not (servers := [pid for pid in tagged() if pid != dying.pid]):
        assert time.monotonic() < deadline, "the pool never started its server"
        await asyncio.sleep(0.05)
    [server] = servers
    argv = psutil.Process(server).cmdline()
    port = int(argv[argv.index("--port") + 1])
    assert await answers_health(port) == 503  # started, still loading
    dying.kill()
    await dying.wait()
    assert psutil.Process(server).status() != psutil.STATUS_ZOMBIE  # it outlived its pool

    pool = ModelPool([spec()], budgets={"cpu": 2 * GB}, state_dir=tmp_path)
    async with pool:
        assert await wait_gone(server)
        assert PidFiles(tmp_path).records() == []


async def test_the_workers_of_a_server_whose_main_process_died_are_stopped(
    tmp_path: Path,
) -> None:
    main = await crash_a_pool_that_loaded(tmp_path, "--fork-grandchild")
    [worker] = [p for p in psutil.process_iter() if p.pid != main and _session(p.pid) == main]
    try:
        os.kill(main, signal.SIGKILL)  # the main process dies; its worker lives on
        assert await wait_gone(main)
        assert not await wait_gone(worker.pid, timeout=0.2)

        pool = ModelPool([spec()], budgets={"cpu": 2 * GB}, state_dir=tmp_path)
        async with pool:
            assert await wait_gone(worker.pid)
            assert PidFiles(tmp_path).records() == []
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()  # carries no tag: the fixture would not find it


async def test_workers_that_left_the_process_group_but_not_the_session_are_stopped(
    tmp_path: Path,
) -> None:
    leader, workers = await start_leader()
    PidFiles(tmp_path).write("llm", leader.pid, leader.pid, ["leader"])
    assert [record.pid for record in PidFiles(tmp_path).records()] == [leader.pid]
    assert await end(leader) == 0
    assert [os.getpgid(pid) for pid in workers] == [leader.pid, workers[1]]
    assert [_session(pid) for pid in workers] == [leader.pid, leader.pid]

    pool = ModelPool([spec()], budgets={"cpu": 2 * GB}, state_dir=tmp_path)
    async with pool:
        assert [await wait_gone(pid) for pid in workers] == [True, True]
        assert PidFiles(tmp_path).records() == []


async def test_a_process_older_than_the_recorded_server_is_not_taken_for_its_worker(
    tmp_path: Path,
) -> None:
    leader, workers = await start_leader()
    await end(leader)
    folder = tmp_path / "processes"
    folder.mkdir()
    (folder / "llm.json").write_text(json.dumps({
        "model_id": "llm", "pid": leader.pid, "pgid": leader.pid,
        "argv": ["leader"], "started": time.time() + 3600,  # started after its "workers"
    }))  # fmt: skip
    pool = ModelPool([spec()], budgets={"cpu": 2 * GB}, state_dir=tmp_path)
    async with pool:
        assert not [pid for pid in workers if await wait_gone(pid, timeout=0.2)]
        assert PidFiles(tmp_path).records() == []


async def test_a_server_is_recorded_from_its_start_and_its_record_goes_with_it(
    tmp_path: Path,
) -> None:
    slow = ModelSpec(id="slow", backend="process", memory=GB, device="cpu", options={
        "command": [sys.executable, TINY, "--port", "${PORT}", "--tag", TAG, "--never-healthy"],
        "ready_timeout": 3,
    })  # fmt: skip
    fragile = ModelSpec(id="fragile", backend="process", memory=GB, device="cpu", options={
        "command": [sys.executable, TINY, "--port", "${PORT}", "--tag", TAG, "--die-after", "1"],
    })  # fmt: skip
    pool = ModelPool([slow, fragile], budgets={"cpu": 2 * GB}, state_dir=tmp_path)
    async with pool:
        loading = asyncio.create_task(pool.load("slow"))
        deadline = time.monotonic() + 20
        while not PidFiles(tmp_path).records():
            assert time.monotonic() < deadline, "no record while the server was loading"
            await asyncio.sleep(0.02)
        assert pool.state("slow") is ModelState.LOADING
        [record] = PidFiles(tmp_path).records()
        assert record.model_id == "slow"
        assert record.pid in tagged()
        with pytest.raises(LoadFailed, match="ready_timeout"):  # its server stopped
            await loading
        assert await wait_gone(record.pid)
        assert PidFiles(tmp_path).records() == []

        await pool.load("fragile")
        [record] = PidFiles(tmp_path).records()
        assert record.model_id == "fragile"
        deadline = time.monotonic() + 20
        while pool.state("fragile") is not ModelState.FAILED:  # it dies after a second
            assert time.monotonic() < deadline, "the crash was never noticed"
            await asyncio.sleep(0.05)
        assert PidFiles(tmp_path).records() == []
    assert list((tmp_path / "processes").iterdir()) == []  # no temporary file either


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None


async def test_a_temporary_or_unreadable_record_left_by_a_crash_is_cleared(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "processes"
    folder.mkdir()
    (folder / ".record-k2j3x").write_text('{"model_id": "llm", "pid"')  # killed mid-write
    (folder / "llm.4242.json").write_text("")  # written by hand, or by another program
    pool = ModelPool([spec()], budgets={"cpu": 2 * GB}, state_dir=tmp_path)
    async with pool:
        assert list(folder.iterdir()) == []
        async with pool.use("llm"):
            [record] = PidFiles(tmp_path).records()
            assert [path.name for path in folder.iterdir()] == [f"llm.{record.pid}.json"]
    assert list(folder.iterdir()) == []
