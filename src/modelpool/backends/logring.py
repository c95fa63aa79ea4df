"""LogRing: the last N lines a backend process wrote, for error messages and ``log_tail``.

A reader task pumps the process's stdout (stderr merged into it) into the ring as fast
as it comes, so a chatty server never blocks on a full pipe. Bytes are decoded as UTF-8
(invalid bytes replaced), lines longer than ``max_line`` characters are cut, and each
line is also logged at DEBUG under ``modelpool.process``.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections import deque

log = logging.getLogger("modelpool.process")

CHUNK = 64 * 1024


class LogRing:
    """A bounded ring of output lines; the oldest fall off when it is full."""

    def __init__(self, size: int, name: str = "", max_line: int = 4096) -> None:
        self.name = name
        self.max_line = max_line
        self._lines: deque[str] = deque(maxlen=size)
        self.count = 0
        """Complete lines ever added: a follower's place (``since``)."""
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> None:
        """Add raw output; complete lines enter the ring, the rest waits for its newline."""
        text = self._partial + self._decoder.decode(data)
        *complete, self._partial = text.split("\n")
        for line in complete:
            self._append(line)
        while len(self._partial) > self.max_line:  # a line without end: keep it in pieces
            self._append(self._partial[: self.max_line])
            self._partial = self._partial[self.max_line :]

    def flush(self) -> None:
        """End of output: the unfinished last line, if any, becomes a line."""
        self._partial += self._decoder.decode(b"", final=True)
        if self._partial:
            self._append(self._partial)
            self._partial = ""

    def tail(self, lines: int = 20) -> list[str]:
        """The last ``lines`` lines, oldest first, including an unfinished last line."""
        if lines <= 0:
            return []
        current = [*self._lines, self._partial] if self._partial else list(self._lines)
        return current[-lines:]

    def since(self, count: int) -> tuple[list[str], int]:
        """The complete lines added after the ``count``-th (those still in the ring), and
        the count to ask from next time."""
        if count > self.count:  # a place in an earlier run's log: this one from its start
            count = 0
        new = self.count - max(0, count)
        if new <= 0:
            return [], self.count
        return list(self._lines)[-min(new, len(self._lines)) :], self.count

    async def pump(self, stream: asyncio.StreamReader) -> None:
        """Read ``stream`` to its end into the ring (run as a task)."""
        try:
            while chunk := await stream.read(CHUNK):
                self.feed(chunk)
        finally:
            self.flush()

    def _append(self, line: str) -> None:
        line = line.removesuffix("\r")[: self.max_line]
        self._lines.append(line)
        self.count += 1
        log.debug("%s| %s", self.name, line)
