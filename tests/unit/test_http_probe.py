"""The health and sleep/wake client speaks HTTP/1.1 to real servers on loopback: one that
refuses HTTP/1.0 (as some load balancers in front of remote models do) and answers in
chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from modelpool.backends.http_probe import call, get_status

CHUNKED = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A strict server: 505 to HTTP/1.0; to 1.1, a chunked 503 whose body says the
    request's ``Connection`` header, then it closes."""
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *lines = head.decode("ascii").split("\r\n")
    if not request_line.endswith("HTTP/1.1"):
        writer.write(b"HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\n\r\n")
    else:
        connection = next(
            (
                v.strip()
                for n, _, v in (x.partition(":") for x in lines)
                if n.lower() == "connection"
            ),
            "",
        )
        writer.write(CHUNKED)
        for piece in (b"down for ", f"maintenance ({connection})".encode()):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.fixture
async def strict_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_a_server_that_refuses_http_1_0_is_answered_in_1_1(strict_port: int) -> None:
    assert await get_status("127.0.0.1", strict_port, "/health", timeout=5) == 503


async def test_a_chunked_answer_is_decoded_and_the_connection_closed(strict_port: int) -> None:
    status, body = await call("127.0.0.1", strict_port, "GET", "/health", timeout=5)
    assert status == 503
    assert body == b"down for maintenance (close)"
