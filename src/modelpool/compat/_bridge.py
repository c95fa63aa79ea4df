"""A pool run on its own loop thread, for facades called from plain threads and from
other event loops (seed 002's ``with`` blocks inside async code, seed 004's loader
shared by several threads).

The pool keeps its one owner, its loop; callers hand it coroutines and wait for the
result, blocking (``call``) or awaiting on their own loop (``run``).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from modelpool.core.pool import ModelPool
from modelpool.core.sync import LoopThread

T = TypeVar("T")

GIB = 1024**3
"""The seeds' "GB" of VRAM are torch's: bytes / 1024**3."""


def gib(size: float) -> int:
    """``size`` GB of the seeds, in bytes."""
    return int(size * GIB)


def in_gib(size: int) -> float:
    return size / GIB


class PoolThread:
    """``pool`` started on a loop thread of its own until ``close()``."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool
        self._thread = LoopThread("modelpool-compat")
        try:
            self._thread.call(pool.start())
        except BaseException:
            self._thread.close()
            raise

    @property
    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread.thread

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._thread.loop

    def call(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``work`` on the pool's loop; block this thread until it is done."""
        if self.on_loop_thread:
            work.close()
            raise RuntimeError("a blocking call on the pool's own loop would never return")
        return self._thread.call(work, timeout)

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the pool's loop; await it on the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    def submit(self, work: Coroutine[Any, Any, Any]) -> None:
        """Start ``work`` on the pool's loop without waiting for it."""
        asyncio.run_coroutine_threadsafe(work, self.loop)

    def close(self) -> None:
        """Stop the pool (unloading everything) and end the thread."""
        try:
            self._thread.call(self.pool.stop())
        finally:
            self._thread.close()


_threads: weakref.WeakKeyDictionary[ModelPool, PoolThread] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def pool_thread(pool: ModelPool) -> PoolThread:
    """The thread ``pool`` runs on for the facades, started on first use (once, even
    when several threads ask at the same time). The pool must not be started already."""
    with _lock:
        thread = _threads.get(pool)
        if thread is None:
            if pool.running:
                raise RuntimeError(
                    "this pool was started on another loop; give the facade a pool it can "
                    "start on its own thread"
                )
            thread = _threads[pool] = PoolThread(pool)
        return thread


def close_pool_thread(pool: ModelPool) -> None:
    """Stop ``pool`` and its thread, if the facades started it."""
    with _lock:
        thread = _threads.pop(pool, None)
    if thread is not None:
        thread.close()


def read(pool: ModelPool, question: Callable[[], T]) -> T:
    """Ask ``pool`` a question (its status, a model's state) on its own loop when the
    facades run it, so the answer never sees its state half-changed."""
    with _lock:
        thread = _threads.get(pool)
    if thread is None or thread.on_loop_thread:
        return question()

    async def ask() -> T:
        return question()

    return thread.call(ask())
