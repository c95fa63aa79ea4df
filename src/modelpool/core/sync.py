"""Running the pool for code that is not async: a private event loop in a thread.

Seed 002's ``with manager.use_sdxl() as pipeline:`` becomes
``with pool.use_sync("sdxl") as lease:``; ``with ModelPool(...) as pool:`` starts and
stops the pool on that thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, Unpack

if TYPE_CHECKING:
    from modelpool.core.lease import Lease, LeaseOptions

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running forever in a daemon thread, until ``close()``."""

    def __init__(self, name: str = "modelpool-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result in this thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncFacade:
    """Blocking twins of the pool's async methods, mixed into ``ModelPool``."""

    _loop: asyncio.AbstractEventLoop | None
    _loop_thread: LoopThread | None

    if TYPE_CHECKING:  # provided by ModelPool

        async def start(self) -> None: ...

        async def stop(self, drain_timeout: float | None = None) -> None: ...

        async def acquire(self, model: str, **options: Unpack[LeaseOptions]) -> Lease: ...

        def release(self, lease: Lease, ok: bool = True) -> None: ...

        def _require_loop(self) -> asyncio.AbstractEventLoop: ...

    @contextlib.contextmanager
    def use_sync(self, model: str, **options: Unpack[LeaseOptions]) -> Iterator[Lease]:
        """``with pool.use_sync("id") as lease:`` from plain, non-async code; the same
        options as ``pool.use``."""
        loop = self._sync_loop()
        lease = asyncio.run_coroutine_threadsafe(self.acquire(model, **options), loop).result()
        ok = True
        try:
            yield lease
        except Exception:
            ok = False
            raise
        finally:
            loop.call_soon_threadsafe(self.release, lease, ok)

    def start_sync(self) -> None:
        """Start the pool on a private loop thread (for scripts that are not async)."""
        if self._loop is not None:
            raise RuntimeError("the pool was already started")
        self._loop_thread = LoopThread()
        self._loop_thread.call(self.start())

    def stop_sync(self) -> None:
        if self._loop_thread is None:
            raise RuntimeError("stop_sync() stops a pool started with start_sync()/use_sync()")
        self._loop_thread.call(self.stop())
        self._loop_thread.close()
        self._loop_thread = None

    def __enter__(self) -> Self:
        self.start_sync()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_sync()

    def _sync_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self.start_sync()
        loop = self._require_loop()
        if self._loop_thread is not None and threading.current_thread() is self._loop_thread.thread:
            raise RuntimeError("use_sync() was called on the pool's own loop thread")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError(
                "use_sync() would block the pool's loop; use `async with pool.use()`"
            )
        return loop
