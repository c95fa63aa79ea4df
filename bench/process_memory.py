"""Memory of process trees, sampled while a benchmark runs; and the processes a run
marked as its own, to end them whatever happens.

``TreeSampler`` reads, every ``period`` seconds, the resident memory (RSS) of each
watched process together with every process under it (a replica and the model servers
it started), and keeps each tree's peak above its baseline (the tree idle, before any
model), and how many samples were above the baseline plus a budget.

``tagged(tag)`` finds the processes whose environment carries ``tag`` (a benchmark sets
it in its own environment before it starts Ray, so every Ray process and every model
server under them inherits it); ``end_tagged`` kills them, sparing the caller.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field

import psutil

TAG_VARIABLE = "PEER_BENCH_TAG"


def tree_rss(process: psutil.Process) -> tuple[int, int]:
    """RSS of ``process`` and all processes under it, in bytes; and how many are under it."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total = 0
    for member in members:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total, len(members) - 1


@dataclass
class TreeMemory:
    """What the samples of one tree showed."""

    pid: int
    baseline: int
    budget: int
    peak_used: int = 0
    """Peak RSS of the tree above its baseline."""
    peak_children: int = 0
    samples: int = 0
    over_budget: int = 0
    """Samples where the tree used more than ``budget`` above its baseline."""
    used: list[int] = field(default_factory=list, repr=False)

    def add(self, rss: int, children: int) -> None:
        used = rss - self.baseline
        self.samples += 1
        self.peak_used = max(self.peak_used, used)
        self.peak_children = max(self.peak_children, children)
        self.over_budget += used > self.budget
        self.used.append(used)


class TreeSampler:
    """Samples the trees of ``pids`` in a thread from ``start()`` until ``stop()``."""

    def __init__(self, baselines: dict[int, int], budget: int, period: float = 0.2) -> None:
        self.trees = {pid: TreeMemory(pid, base, budget) for pid, base in baselines.items()}
        self.processes = {pid: psutil.Process(pid) for pid in baselines}
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[TreeMemory]:
        self._stop.set()
        self._thread.join()
        return list(self.trees.values())

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for pid, process in self.processes.items():
                rss, children = tree_rss(process)
                if rss:
                    self.trees[pid].add(rss, children)


def settled_rss(pids: list[int], window: float = 3.0, slack: int = 4_000_000) -> dict[int, int]:
    """Each tree's RSS once none has moved by more than ``slack`` bytes for ``window``
    seconds (a replica still importing its libraries is not idle yet); at most 60 s."""
    processes = [psutil.Process(pid) for pid in pids]
    deadline = time.monotonic() + 60.0
    last = [tree_rss(p)[0] for p in processes]
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = [tree_rss(p)[0] for p in processes]
        if any(abs(a - b) > slack for a, b in zip(now, last, strict=True)):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= window:
            break
    return dict(zip(pids, last, strict=True))


def tagged(tag: str, *, needle: str = "") -> list[psutil.Process]:
    """Processes (not this one) whose environment has ``TAG_VARIABLE=tag`` and whose
    command line contains ``needle``."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if needle and needle not in " ".join(process.info["cmdline"] or []):
                continue
            if process.environ().get(TAG_VARIABLE) == tag:
                found.append(process)
    return found


def end_tagged(tag: str, *, needle: str = "", grace: float = 5.0) -> int:
    """Terminate, then kill after ``grace`` seconds, the processes ``tagged`` finds; how
    many there were."""
    processes = tagged(tag, needle=needle)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace)
    return len(processes)
