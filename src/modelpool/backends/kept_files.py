"""KeptFiles: model files a backend keeps in the page cache for its warm models.

The page-cache warm tier of a file-backed server (llama.cpp maps its GGUF): evicted, the
server stops and its file is *kept*: read ahead into the page cache in the background
(most of it is usually there already, from the server's own mapping), so that the next
start faults it in from RAM rather than from disk. Let go, its pages are dropped
(``POSIX_FADV_DONTNEED``), unless another warm model keeps the same file: two model ids
may serve one GGUF (different context sizes, say), and a drop for one would take the
other's pages too. Pages a running server maps are never dropped by the kernel.

Runs on the pool's event loop; the reads and the advice run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass, field

from modelpool.backends import page_cache
from modelpool.types import Bytes

log = logging.getLogger("modelpool.page_cache")


@dataclass(slots=True, eq=False)
class KeptFile:
    """One warm model's hold on a file: its path, its size, the read-ahead under way."""

    path: str
    size: Bytes
    stop: threading.Event = field(default_factory=threading.Event)
    """Set when the file is let go while it is still being read ahead."""
    reading: asyncio.Task[None] | None = None


class KeptFiles:
    """The files kept for warm models, counted by path."""

    def __init__(self) -> None:
        self._holds: Counter[str] = Counter()

    def keep(self, path: str) -> KeptFile:
        """Hold ``path`` in the page cache from now on; its read-ahead starts in the
        background. Raises ``OSError`` if it is not a readable regular file."""
        size = _regular_file_size(path)
        kept = KeptFile(path, size)
        self._holds[path] += 1
        kept.reading = asyncio.create_task(_read_ahead(kept), name=f"read ahead {path}")
        return kept

    async def ready(self, kept: KeptFile) -> None:
        """Wait for ``kept``'s read-ahead to finish (a start after it reads from RAM)."""
        if kept.reading is not None:
            await asyncio.shield(kept.reading)

    async def release(self, kept: KeptFile, *, drop: bool) -> None:
        """Give up the hold; with ``drop`` (the tier let the model go, rather than its
        server starting again on the cached file), advise the kernel to drop the pages
        once no other warm model holds the file."""
        kept.stop.set()
        if kept.reading is not None:
            await asyncio.shield(kept.reading)
        self._holds[kept.path] -= 1
        if self._holds[kept.path] > 0:
            return
        del self._holds[kept.path]
        if drop:
            await asyncio.to_thread(page_cache.drop, kept.path)

    def held(self, path: str) -> int:
        """How many warm models hold ``path`` now."""
        return self._holds[path]


def _regular_file_size(path: str) -> Bytes:
    if not os.path.isfile(path):
        raise OSError(f"no regular file at {path!r} to keep in the page cache")
    return os.path.getsize(path)


async def _read_ahead(kept: KeptFile) -> None:
    try:
        await asyncio.to_thread(page_cache.read_ahead, kept.path, kept.stop)
    except OSError as error:  # the next start reads it from disk, or fails saying why
        log.warning("reading %s into the page cache failed: %s", kept.path, error)
