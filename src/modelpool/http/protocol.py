"""``limited_protocol``: uvicorn's HTTP protocol with read timeouts and a connection cap.

uvicorn closes a keep-alive connection idle between requests (``timeout_keep_alive``)
and answers 503 past ``limit_concurrency``, but it waits forever for a request that
never completes: a connection that sends nothing, headers sent a byte at a time
(slowloris), a chunked body that never ends. Each holds a file descriptor; with the
usual limit of 1,024, a thousand of them from anyone (no key needed) stop the server.
And ``limit_concurrency`` only answers once a request's headers have arrived, so it
does not bound the sockets held open.

The least machinery that closes these holes is a subclass of uvicorn's httptools
protocol (the one uvicorn picks itself when httptools is installed, as the ``server``
extra does) that arms one timer per phase of reading a request: from the connection
(or the first byte of the next request) until the headers are complete, then until
the body is complete. No timer runs while a response is being sent, so a long stream
that keeps sending is never cut. An ASGI middleware could not do this: it sees a
request only once its headers are complete. A connection beyond ``max_connections``
is answered 503 and closed as soon as it is accepted, before anything is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("modelpool.http")

HEADERS = "its request headers"


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    """Seconds from a connection's start (or a new request's first byte) to its last header."""
    body_timeout: float
    """Seconds from the end of the headers to the end of the body."""
    max_connections: int
    """Connections open at once; more are answered 503 and closed."""


def limited_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""
    return type("LimitedHttpProtocol", (_LimitedHttpProtocol,), {"limits": limits})


class _LimitedHttpProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._tls = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Under TLS this runs once the handshake is done (asyncio times the handshake).
        self._tls = transport.get_extra_info("sslcontext") is not None
        if len(self.connections) > self.limits.max_connections:
            log.warning("refused a connection: %d already open", self.limits.max_connections)
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._arm(self.limits.header_timeout, HEADERS)

    def shutdown(self) -> None:
        if self._tls and (self.cycle is None or self.cycle.response_complete):
            # An idle TLS connection: a graceful close would wait (up to 30 s) for the
            # client's close_notify, which a client that is not reading never sends, and
            # the server's stop waits for every connection. Nothing is lost by cutting it.
            self.transport.abort()
            return
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a request on a kept-alive connection has begun
            self._arm(self.limits.header_timeout, HEADERS)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if self.pipeline:
            # Queued behind an answer still being sent: uvicorn stops reading until that
            # answer is done, so the body cannot arrive; timing it would cut the answer.
            return
        # on_message_complete follows at once when there is no body.
        self._arm(self.limits.body_timeout, "its request body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self, seconds: float, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info("closed the connection of %s: %s took more than %gs", client, what, seconds)
        if what == HEADERS and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_TIMED_OUT)  # no request is being answered: say why
        # Otherwise the request's task sees a disconnect, as when the client leaves.
        self.transport.close()


def _raw_error(status: str, message: str, code: str) -> bytes:
    error = {"message": message, "type": "server_error", "param": None, "code": code}
    body = json.dumps({"error": error}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if status.startswith("503"):
        head += "retry-after: 1\r\n"
    return f"{head}\r\n".encode() + body


_TOO_MANY = _raw_error(
    "503 Service Unavailable", "Too many open connections", "too_many_connections"
)
_TIMED_OUT = _raw_error(
    "408 Request Timeout", "The request took too long to arrive", "request_timeout"
)
