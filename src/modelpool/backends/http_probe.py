"""A tiny HTTP/1.1 client over asyncio streams: enough to poll a health URL (on
loopback, or a remote server's over TLS with its key) and to ask a server to sleep or
wake. One request per connection (``Connection: close``): HTTP/1.1 because some
servers and load balancers in front of remote models refuse 1.0; a chunked answer is
decoded.

Stdlib only on purpose (httpx is an optional extra of the server, not of the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping

MAX_RESPONSE = 64 * 1024
"""Bytes of a response read (and dropped) after its status line."""


async def get_status(host: str, port: int, path: str, timeout: float) -> int:
    """The status code of ``GET http://host:port{path}``.

    Raises ``OSError`` when nothing answers (connection refused, reset), ``TimeoutError``
    after ``timeout`` seconds, ``ValueError`` when the answer is not HTTP. The rest of the
    response is read, up to ``MAX_RESPONSE`` bytes, so that the server never writes to a
    closed socket.
    """
    status, _ = await call(host, port, "GET", path, timeout)
    return status


async def call(
    host: str,
    port: int,
    method: str,
    path: str,
    timeout: float,
    *,
    headers: Mapping[str, str] | None = None,
    tls: bool = False,
) -> tuple[int, bytes]:
    """``method http://host:port{path}`` (``https`` with ``tls``, the certificate checked
    against the system's CAs) with no body and ``headers`` added: the status code and the
    answer's body (its first ``MAX_RESPONSE`` bytes). Raises as ``get_status`` does
    (``ssl.SSLError`` is an ``OSError``)."""
    context = ssl.create_default_context() if tls else None
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if tls else None
        )
        try:
            request = (
                f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n"
                f"Connection: close\r\n{extra}Content-Length: 0\r\n\r\n"
            )
            writer.write(request.encode("ascii"))
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.split(maxsplit=2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
            answer = b""
            while len(answer) < MAX_RESPONSE and (chunk := await reader.read(16 * 1024)):
                answer += chunk
            head, _, body = answer[:MAX_RESPONSE].partition(b"\r\n\r\n")
            if _is_chunked(head):
                body = _dechunked(body)
            return int(parts[1]), body
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _is_chunked(head: bytes) -> bool:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            return True
    return False


def _dechunked(body: bytes) -> bytes:
    """The data of a chunked body (as much of it as was read: a cut one stops there)."""
    data, rest = b"", body
    while rest:
        size_line, found, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if not found or size == 0:
            break
        data += rest[:size]
        rest = rest[size + 2 :]
    return data
