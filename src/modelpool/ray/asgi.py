"""Driving the server's ASGI application in-process: its lifespan, and one request.

A pool replica on Ray runs ``modelpool serve``'s own application (``create_app``)
without a socket: Ray carries a request to the replica as plain values
(``HttpCall``), this module plays the ASGI server for it, and the answer goes back as
a stream of parts, the head (``HttpHead``) first and then the body's chunks as the
application sends them. Every route, proxy, error shape and limit of the server is
thereby the same on Ray; nothing is re-implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message

HeaderList = list[tuple[bytes, bytes]]
DISCONNECT_GRACE = 1.0
"""Seconds an application gets to end a request on its own once its client left."""


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request, as values Ray can carry."""

    method: str
    path: str
    query: bytes = b""
    headers: HeaderList = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HttpHead:
    """The first part of an answer: its status and headers."""

    status: int
    headers: HeaderList


class AppFailed(Exception):
    """The application raised after the answer began (a model's server broke off a
    stream): what was sent is incomplete, and the connection must be aborted."""


class Lifespan:
    """The application's lifespan: ``startup`` runs what it does before serving (the
    pool starts), ``shutdown`` what it does at the end (every model unloaded)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.create_task(
            self._app(scope, self._inbox.get, self._outbox.put)  # type: ignore[arg-type]
        )
        await self._expect("lifespan.startup")

    async def shutdown(self) -> None:
        if self._task is None:
            return
        await self._expect("lifespan.shutdown")
        await self._task
        self._task = None

    async def _expect(self, phase: str) -> None:
        await self._inbox.put({"type": phase})
        message = await self._outbox.get()
        if message["type"] != f"{phase}.complete":
            raise RuntimeError(f"{phase} failed: {message.get('message', message['type'])}")


async def call(app: ASGIApp, request: HttpCall) -> AsyncIterator[HttpHead | bytes]:
    """Run ``request`` through ``app``: the head, then each chunk of the body as sent.

    Closing the iterator early (the client left) is a disconnect to the application,
    which returns its lease and closes the model server's connection. An application
    that raises after its head went out raises ``AppFailed`` here, after the chunks it
    did send."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": request.query,
        "headers": request.headers,
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    parts: asyncio.Queue[Message | None] = asyncio.Queue()
    gone = asyncio.Event()
    sent_body = False

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await parts.put(message)

    async def run() -> None:
        try:
            await app(scope, receive, send)
        finally:
            await parts.put(None)

    task = asyncio.create_task(run())
    began = False
    try:
        while (message := await parts.get()) is not None:
            if message["type"] == "http.response.start":
                began = True
                yield HttpHead(message["status"], list(message.get("headers", [])))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
        await asyncio.wait([task])  # ``run`` is in its last step: the None is its own
        error = None if task.cancelled() else task.exception()
        if error is not None:
            if not began:
                raise error
            raise AppFailed(str(error)) from error
    finally:
        gone.set()
        if not task.done():
            # The app learns the client left (it returns its lease and closes the model
            # server's connection itself); one that does not react is cancelled.
            await asyncio.wait([task], timeout=DISCONNECT_GRACE)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
