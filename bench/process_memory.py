"""Memory of process trees, sampled while a benchmark runs; and the processes a run
marked as its own, to end them whatever happens.

``TreeSampler`` reads, every ``period`` seconds, the resident memory (RSS) of each
watched process together with every process under it (a replica and the model servers
it started), and keeps each tree's peak above its baseline (the tree idle, before any
model), what the tree held at that peak, and how many samples were above the baseline
plus a budget. A child caught between its fork and its exec (a server being spawned)
is not counted: it is still the root's image, whose pages RSS would count twice.

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


def tree_rss(process: psutil.Process) -> tuple[int, list[tuple[str, int]]]:
    """RSS of ``process`` and all processes under it, in bytes; and each process under it
    (a short form of its command line, its RSS)."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0, []
    total = 0
    under = []
    image: list[str] = []
    with contextlib.suppress(psutil.Error):
        image = process.cmdline()
    for member in members:
        with contextlib.suppress(psutil.Error):
            if member is not process and member.cmdline() == image:
                # Forked, not yet exec'd (a server being spawned): its pages are the
                # root's own, shared copy-on-write, and RSS would count them twice.
                continue
            rss = member.memory_info().rss
            total += rss
            if member is not process:
                under.append((short_command(member), rss))
    return total, under


def short_command(process: psutil.Process) -> str:
    """The program and the words that tell model servers apart (``--n_ctx 512``)."""
    with contextlib.suppress(psutil.Error):
        argv = process.cmdline()
        words = [os.path.basename(argv[0])] if argv else []
        for flag in ("-m", "--n_ctx"):
            if flag in argv[:-1]:
                words += [flag, argv[argv.index(flag) + 1]]
        if len(argv) > 1 and argv[1].endswith(".py"):
            words.append(os.path.basename(argv[1]))
        return " ".join(words)
    return "?"


@dataclass
class TreeMemory:
    """What the samples of one tree showed."""

    pid: int
    baseline: int
    budget: int
    peak_used: int = 0
    """Peak RSS of the tree above its baseline."""
    peak_children: int = 0
    peak_members: list[tuple[str, int]] = field(default_factory=list)
    """The processes under the tree's root at its peak, with their RSS."""
    samples: int = 0
    over_budget: int = 0
    """Samples where the tree used more than ``budget`` above its baseline."""
    used: list[int] = field(default_factory=list, repr=False)

    def add(self, rss: int, under: list[tuple[str, int]]) -> None:
        used = rss - self.baseline
        self.samples += 1
        if used > self.peak_used:
            self.peak_used, self.peak_members = used, under
        self.peak_children = max(self.peak_children, len(under))
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
                rss, under = tree_rss(process)
                if rss:
                    self.trees[pid].add(rss, under)


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
