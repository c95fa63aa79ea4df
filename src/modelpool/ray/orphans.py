"""Model servers a killed replica left behind on its node, stopped by the next one.

Each replica keeps its pid files in a folder of its own (``<state_dir>/ray/<replica>``),
because replicas sharing a node must not reap each other's live servers. A replica
that Ray killed (a crash, ``ray.kill``, an out-of-memory kill) never stops its pool,
and the replica Ray starts in its place has another id, so another folder. So each
replica marks its folder with its owner (``owner.json``: pid and start time), and at
start stops the servers recorded in every sibling folder whose owner is gone, then
removes that folder. ``state_dir`` must be local to the node (not shared storage):
a process on another node is not ours to judge.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import psutil

from modelpool.backends.pidfiles import START_TIME_TOLERANCE, PidFiles

log = logging.getLogger("modelpool.ray")

OWNER_FILE = "owner.json"
CLAIM_GRACE = 60.0
"""Seconds a folder without its owner file is left alone: a replica just making it."""


def claim(folder: Path) -> None:
    """Mark ``folder`` as this process's (written whole or not at all)."""
    folder.mkdir(parents=True, exist_ok=True)
    owner = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    temporary = folder / f".{OWNER_FILE}.tmp"
    temporary.write_text(json.dumps(owner))
    os.replace(temporary, folder / OWNER_FILE)


def owner_alive(folder: Path) -> bool:
    """Whether the process that claimed ``folder`` still runs (the same process: a
    reused pid with another start time is not it). No readable claim: not alive."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
        process = psutil.Process(int(owner["pid"]))
        started = process.create_time()
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return False
    return abs(started - float(owner["started"])) <= START_TIME_TOLERANCE


def dead_siblings(own: Path, now: float) -> list[Path]:
    """The replica folders beside ``own`` whose owner is gone."""
    root = own.parent
    if not root.is_dir():
        return []
    dead = []
    for folder in sorted(root.iterdir()):
        if folder == own or not folder.is_dir() or owner_alive(folder):
            continue
        if not (folder / OWNER_FILE).exists() and now - folder.stat().st_mtime < CLAIM_GRACE:
            continue  # being claimed right now
        dead.append(folder)
    return dead


async def reap_dead_siblings(own: Path) -> list[Path]:
    """Stop the servers recorded by every replica folder beside ``own`` whose owner is
    gone, and remove those folders; return them."""
    reaped = []
    for folder in dead_siblings(own, time.time()):
        left = await PidFiles(folder).reap()
        if left:
            log.warning(
                "stopped %d model server(s) of replica %s, which ended without stopping them",
                len(left),
                folder.name,
            )
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    return reaped
