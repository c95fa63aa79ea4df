"""Standby interpreters: a Python server's imports done before the pool asks for it.

A server started as ``python -m module ...`` spends much of a small model's start in
its imports: llama-cpp-python's server is ready 0.57 s after it is started here, and
0.16 s when its imports were done ahead (``bench/llamacpp_swap.py``). A *standby* is the same
interpreter, started with the same environment and working directory, that has done
those imports (``standby_imports``) and waits on its stdin; handed the rest of a
command line, it runs the module as ``-m`` would (``standby_launcher``). So the next
start of any server with the same interpreter, module, imports, environment and working
directory (its *key*; the port, model file and other arguments may differ) takes the
standby and skips the imports.

One standby waits per key, and at most ``limit`` in all (the least recently used key's
goes first); one is started a second after a server of its key is ready (never while it
loads, nor while it gives its first answers), to be there for the next start. A key
whose standby failed gets no other: the next starts of it are ordinary. A waiting
standby needs no pid record: its stdin is a pipe from the pool, so if the pool's process
dies it reads the end of it and exits; a standby taken by a server is recorded as the
server, as any other.

A standby counts as waiting only once it says its imports are done (a line on its
output); one that exits before (an import that fails) is logged with what it printed,
and its key gets no other.

What it costs: one waiting interpreter holds its imports' memory in host RAM (about
70 MB for llama-cpp-python's server), outside every budget, until the pool closes it;
and its imports' CPU time, spent after a load rather than during the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelpool.backends import procgroup

log = logging.getLogger("modelpool.process")

LAUNCHER = str(Path(__file__).with_name("standby_launcher.py").resolve())
START_DELAY = 1.0
"""Seconds between a server's start and the start of the standby for the next one: the
imports would otherwise take CPU from the new server's first answers (on two cores, a
first answer 0.3 s later, as ``bench/llamacpp_swap.py`` measured before this delay)."""
DEFAULT_LIMIT = 2
"""Standbys waiting at once, over all keys."""
OUTPUT_CHARS = 2000
"""Characters of a dead standby's output quoted in the warning."""
READY_MARK = b"modelpool standby: imports done\n"
"""What the launcher prints once its imports are done (and nothing else of its own)."""
IMPORT_TIMEOUT = 300.0
"""Seconds a standby may take to import (vLLM's imports take tens of seconds)."""
END_GRACE = 2.0
"""Seconds a standby whose input was closed may take to exit before it is killed."""


@dataclass(frozen=True, slots=True)
class StandbyKey:
    """What a standby must share with the server that takes it."""

    python: str
    module: str
    imports: tuple[str, ...]
    env: frozenset[tuple[str, str]]
    cwd: str | None

    @property
    def argv(self) -> tuple[str, ...]:
        return (self.python, LAUNCHER, self.module, *self.imports)


def standby_key(
    argv: Sequence[str], env: Mapping[str, str], cwd: str | None, imports: Sequence[str]
) -> StandbyKey | None:
    """The key of a server started as ``argv`` (``[python, -m, module, ...]``) in
    ``env`` and ``cwd``; None when it has no imports to do ahead or is not started so."""
    if not imports or len(argv) < 3 or argv[1] != "-m":
        return None
    return StandbyKey(argv[0], argv[2], tuple(imports), frozenset(env.items()), cwd)


@dataclass(frozen=True, slots=True)
class Standby:
    """A standby whose imports are done, waiting on its stdin."""

    process: asyncio.subprocess.Process
    said: bytes
    """What it printed while it imported (warnings), for the log of the server it becomes."""


class Standbys:
    """The waiting standbys of one backend, and the ones being started."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._waiting: OrderedDict[StandbyKey, Standby] = OrderedDict()
        self._starting: dict[StandbyKey, asyncio.subprocess.Process | None] = {}
        self._failed: set[StandbyKey] = set()
        self._closed = False
        self._closing = asyncio.Event()

    async def take(self, key: StandbyKey) -> Standby | None:
        """The standby waiting for ``key``, no longer waiting; None if none is (one
        killed while it waited is let go, and its key gets no other)."""
        standby = self._waiting.pop(key, None)
        if standby is None:
            return None
        if (code := standby.process.returncode) is not None:
            await end(standby.process)
            self._give_up(key, f"{procgroup.describe_exit(code)} while it waited", b"")
            return None
        return standby

    def fail(self, key: StandbyKey) -> None:
        """A server started in ``key``'s standby failed to start: start its next ones
        the ordinary way (the failure may be the standby's)."""
        self._failed.add(key)

    async def fill(self, key: StandbyKey, delay: float = 0.0) -> None:
        """Start a standby for ``key`` after ``delay`` seconds and return once its
        imports are done, unless one waits or starts already (or the key failed, or the
        set is closed); end the least recently used beyond the limit."""
        if self._closed or key in self._failed or key in self._starting:
            return
        if key in self._waiting:
            self._waiting.move_to_end(key)
            return
        self._starting[key] = None
        with contextlib.suppress(TimeoutError):  # a close ends the wait
            await asyncio.wait_for(self._closing.wait(), delay)
        if self._closed:
            self._starting.pop(key, None)
            return
        try:
            process = await asyncio.create_subprocess_exec(
                *key.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=dict(key.env),
                cwd=key.cwd,
            )
        except OSError as error:  # the server itself started: this should not happen
            self._starting.pop(key, None)
            self._give_up(key, f"could not be started: {error}", b"")
            return
        self._starting[key] = process
        try:
            done, said = await _imports_done(process) if not self._closed else (False, b"")
        finally:
            self._starting.pop(key, None)
        if self._closed or not done:
            await end(process)
            if not self._closed:
                code = process.returncode
                how = "timed out importing" if code is None else procgroup.describe_exit(code)
                self._give_up(key, f"{how} before its imports were done", said)
            return
        self._waiting[key] = Standby(process, said)
        while len(self._waiting) > self._limit:
            _, oldest = self._waiting.popitem(last=False)
            await end(oldest.process)

    async def close(self) -> None:
        """End every standby, waiting or still importing; start no more."""
        self._closed = True
        self._closing.set()
        for process in self._starting.values():
            if process is not None:  # its fill ends and reaps it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        while self._waiting:
            _, standby = self._waiting.popitem(last=False)
            await end(standby.process)

    def _give_up(self, key: StandbyKey, what: str, said: bytes) -> None:
        self._failed.add(key)
        output = said.decode("utf-8", "replace").strip()[-OUTPUT_CHARS:] or "(no output)"
        log.warning(
            "the standby interpreter for %s %s; servers of its kind now start without one. "
            "Its output: %s",
            key.module, what, output,
        )  # fmt: skip


async def _imports_done(process: asyncio.subprocess.Process) -> tuple[bool, bytes]:
    """Read the standby's output until it says its imports are done (True) or ends
    or times out (False); with what it printed before."""
    assert process.stdout is not None
    said = b""
    try:
        async with asyncio.timeout(IMPORT_TIMEOUT):
            while line := await process.stdout.readline():
                if line == READY_MARK:
                    return True, said
                said = (said + line)[-OUTPUT_CHARS * 4 :]
    except TimeoutError:
        pass
    return False, said


async def hand_over(process: asyncio.subprocess.Process, arguments: Sequence[str]) -> None:
    """Give a standby its server's arguments (those after ``-m module``)."""
    assert process.stdin is not None
    process.stdin.write(json.dumps(list(arguments)).encode() + b"\n")
    await process.stdin.drain()
    process.stdin.close()


async def end(process: asyncio.subprocess.Process) -> None:
    """End a standby: close its input (it exits), kill it if it does not."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(procgroup.exit_code(process), END_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
