"""A tiny HTTP/1.0 GET over asyncio streams: enough to poll a health URL on loopback.

Stdlib only on purpose (httpx is an optional extra of the server, not of the pool).
"""

from __future__ import annotations

import asyncio
import contextlib

MAX_RESPONSE = 64 * 1024
"""Bytes of a response read (and dropped) after its status line."""


async def get_status(host: str, port: int, path: str, timeout: float) -> int:
    """The status code of ``GET http://host:port{path}``.

    Raises ``OSError`` when nothing answers (connection refused, reset), ``TimeoutError``
    after ``timeout`` seconds, ``ValueError`` when the answer is not HTTP. The rest of the
    response is read, up to ``MAX_RESPONSE`` bytes, so that the server never writes to a
    closed socket.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            request = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: */*\r\n\r\n"
            writer.write(request.encode("ascii"))
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.split(maxsplit=2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
            left = MAX_RESPONSE
            while left > 0 and (chunk := await reader.read(min(left, 16 * 1024))):
                left -= len(chunk)
            return int(parts[1])
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
