"""A replica's model servers outliving it are stopped by the next replica on the node
(``modelpool.ray.orphans``), never a live sibling's. Real processes, no Ray needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from modelpool.backends.pidfiles import PidFiles
from modelpool.ray.orphans import OWNER_FILE, claim, dead_siblings, owner_alive, reap_dead_siblings

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def server_recorded_in(folder: Path) -> subprocess.Popen[bytes]:
    """A model server stand-in in a session of its own, recorded as the backend does."""
    process = subprocess.Popen(SLEEPER, start_new_session=True)
    PidFiles(folder).write("m", process.pid, process.pid, SLEEPER)
    return process


def claimed_by_a_dead_process(folder: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    folder.mkdir(parents=True)
    owner = {"pid": int(gone.stdout), "started": psutil.Process().create_time()}
    (folder / OWNER_FILE).write_text(json.dumps(owner))


async def test_a_dead_replicas_servers_are_stopped_and_a_live_ones_kept(tmp_path: Path) -> None:
    root = tmp_path / "ray"
    dead, live, own = root / "dead", root / "live", root / "own"
    claimed_by_a_dead_process(dead)
    claim(live)  # this test's process: alive
    claim(own)
    orphan = server_recorded_in(dead)
    kept = server_recorded_in(live)
    try:
        assert not owner_alive(dead)
        assert owner_alive(live)
        assert await reap_dead_siblings(own) == [dead]
        assert orphan.wait(timeout=10) is not None  # stopped
        assert kept.poll() is None  # a live replica's server is not ours to stop
        assert not dead.exists()
        assert live.exists()
    finally:
        for process in (orphan, kept):
            process.kill()
            process.wait()


def test_a_folder_being_claimed_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "ray"
    (root / "starting").mkdir(parents=True)
    own = root / "own"
    claim(own)
    assert dead_siblings(own, now=os.stat(root / "starting").st_mtime + 1) == []
    assert dead_siblings(own, now=os.stat(root / "starting").st_mtime + 120) == [root / "starting"]
