"""Forwarding one request to a model's own OpenAI-compatible server, and its answer back.

The body goes upstream as the client sent it (re-encoded only when the model's
``defaults`` or a different ``model`` name must be filled in). A streamed answer is
passed through chunk by chunk as it arrives, never collected. The lease is returned
when the last byte has gone out, or when the client leaves: then the upstream
connection is closed too, which is how llama.cpp and vLLM learn to stop generating.

A server modelpool did not start (``backend: remote``) gets what its handle's
``upstream`` says: its key (``Authorization``, sent to it alone) and its timeouts; a
connection or an answer that takes longer is our 504, and whatever is recorded of its
error answers has the key scrubbed out, should it echo it back.

An error answer is passed on only in OpenAI's shape and cleaned (``upstream_errors``).
A stream the model's server breaks off never looks complete: the client gets an SSE
``error`` event, then the body is aborted without its last chunk (``StreamBroken``
raised to the server, which closes the connection), so HTTP clients and the ``openai``
package raise instead of handing over a truncated answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from modelpool.core.lease import Lease
from modelpool.core.upstream import UpstreamAccess
from modelpool.http.errors import SERVER_ERROR, ApiError
from modelpool.http.upstream_errors import UpstreamErrorLog, client_error, scrubbed

Done = Callable[[int, bool], None]
"""Called once when the exchange is over: the status sent and whether the model was fine."""

PASSED_HEADERS = ("content-type", "x-request-id", "openai-processing-ms")
"""Upstream headers worth keeping; hop-by-hop ones and lengths are the server's own."""

UPSTREAM_ERRORS = (aiohttp.ClientError,)
TIMEOUTS = (aiohttp.ServerTimeoutError,)
"""A connect or read timeout (``UpstreamAccess``'s): a ``ClientError`` too, caught first."""


class StreamBroken(Exception):
    """A model's server broke off a stream: raised after the error event went out, so
    the server aborts the response instead of ending it cleanly."""


class Upstream:
    """One aiohttp session for every model server, made on first use (a session belongs
    to the running loop): keep-alive connections, no overall timeout (a long generation
    is legitimate), but a short connect timeout."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0),
                # Bytes pass through as the model's server sent them: ask for none
                # compressed, as the answer goes on without a Content-Encoding.
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


async def forward(
    client: Upstream, lease: Lease, path: str, body: bytes, done: Done, errors: UpstreamErrorLog
) -> Response | RelayResponse:
    """Send ``body`` to ``path`` (``chat/completions``...) on the lease's server.

    Owns the lease from here: ``done`` is called exactly once, after which the caller
    returns the lease. Error answers and broken streams are recorded in ``errors``.
    """
    assert lease.endpoint is not None
    access = lease.handle.upstream
    headers = {"content-type": "application/json", "accept": "*/*"}
    options: dict[str, Any] = {}
    if access is not None:
        headers |= access.headers
        options["timeout"] = aiohttp.ClientTimeout(
            total=None, sock_connect=access.connect_timeout, sock_read=access.read_timeout
        )
    try:
        upstream = await client.session().post(
            f"{lease.endpoint}/{path}", data=body, headers=headers, **options
        )
    except TIMEOUTS:
        done(504, False)
        raise _timed_out(lease, access) from None
    except UPSTREAM_ERRORS:
        done(502, False)
        raise _unreachable(lease) from None
    if not upstream.headers.get("content-type", "").startswith("text/event-stream"):
        passed = {k: v for k in PASSED_HEADERS if (v := upstream.headers.get(k))}
        try:
            content = await upstream.read()
        except TIMEOUTS:
            done(504, False)
            raise _timed_out(lease, access) from None
        except UPSTREAM_ERRORS:
            done(502, False)
            raise _unreachable(lease) from None
        finally:
            upstream.release()
        if upstream.status >= 400:
            if access is not None:
                content = scrubbed(content, access.secrets)
            errors.record(lease.model_id, upstream.status, content)
            refusal = client_error(lease.model_id, upstream.status, content)
            done(refusal.status, upstream.status < 500)  # counted as the client saw it
            return refusal.response()
        done(upstream.status, True)
        return Response(content, upstream.status, headers=passed)
    return RelayResponse(_Relay(upstream, done, lease.model_id, errors, access))


class _Relay:
    """A streamed upstream answer and what to do once it is over, whatever ends it."""

    def __init__(
        self,
        upstream: aiohttp.ClientResponse,
        done: Done,
        model_id: str,
        errors: UpstreamErrorLog,
        access: UpstreamAccess | None = None,
    ) -> None:
        self.upstream, self.done = upstream, done
        self.model_id, self.errors, self.access = model_id, errors, access
        # Until the last chunk went out: the client left, which is not the model's fault.
        self.status, self.fine = 499, True
        self.closed = False

    def broken_event(self, timed_out: bool = False) -> bytes:
        """The SSE event that tells the client the answer is incomplete, in OpenAI's shape."""
        message = f"The server of model {self.model_id!r} broke off the answer"
        code = "upstream_broke_off"
        if timed_out and self.access is not None:
            seconds = _seconds(self.access.read_timeout)
            message = (
                f"The server of model {self.model_id!r} sent nothing for {seconds} "
                "(timeouts.read); the answer was given up"
            )
            code = "upstream_timeout"
        error = {"message": message, "type": SERVER_ERROR, "param": None, "code": code}
        return error_event(error)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.done(self.status, self.fine)
        if self.status == 499:
            # Closing the upstream connection is what tells the model's server to stop.
            self.upstream.close()
        else:
            self.upstream.release()


class RelayResponse:
    """A streamed answer relayed chunk by chunk, as a bare ASGI response.

    Not Starlette's ``StreamingResponse``: that one watches for the client leaving with
    an anyio task group per stream, a sixth of a stream's CPU here. One plain task on
    ``receive`` does the same: when the client leaves it cancels the relay, whose
    ``close`` then returns the lease and closes the upstream connection. ``close`` runs
    whatever ends the stream, even when it never started.
    """

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay
        self.status_code = relay.upstream.status
        upstream = relay.upstream.headers
        self.headers = [(k.encode(), v.encode()) for k in PASSED_HEADERS if (v := upstream.get(k))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay, task = self.relay, asyncio.current_task()
        assert task is not None
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        watcher.add_done_callback(lambda w: task.cancel() if not relay.closed else None)
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.headers}
            )
            try:
                async for chunk in relay.upstream.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except UPSTREAM_ERRORS as error:
                relay.status, relay.fine = 502, False  # the model's server broke off
                relay.errors.record(relay.model_id, 502, f"stream broken off: {error!r}")
                event = relay.broken_event(timed_out=isinstance(error, TIMEOUTS))
                await send({"type": "http.response.body", "body": event, "more_body": True})
                raise StreamBroken(f"the server of model {relay.model_id!r} broke off") from None
            relay.status, relay.fine = self.status_code, self.status_code < 500
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            gone = watcher.done() and not watcher.cancelled()
            if not gone or task.uncancel() > 0:
                raise  # a cancellation of our own caller (shutdown), not the client leaving
        finally:
            relay.close()
            watcher.cancel()


def error_event(error: Mapping[str, Any]) -> bytes:
    """An SSE ``error`` event with ``error`` (an error object in OpenAI's shape), which
    the ``openai`` package raises as an ``APIError``."""
    # A blank line first ends an event the model's server may have left half-sent.
    return f"\n\nevent: error\ndata: {json.dumps({'error': error})}\n\n".encode()


async def wait_for_disconnect(receive: Receive) -> None:
    """Returns when the client has gone (after the request body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _timed_out(lease: Lease, access: UpstreamAccess | None) -> ApiError:
    """Our 504: the model's server took longer than its ``timeouts`` allow."""
    limits = ""
    if access is not None:
        limits = (
            f" (timeouts: connect {_seconds(access.connect_timeout)}, "
            f"read {_seconds(access.read_timeout)})"
        )
    return ApiError(
        504,
        f"The server of model {lease.model_id!r} did not answer in time{limits}",
        kind=SERVER_ERROR,
        code="upstream_timeout",
    )


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:g}s"


def _unreachable(lease: Lease) -> ApiError:
    return ApiError(
        502,
        f"The server of model {lease.model_id!r} did not answer",
        kind=SERVER_ERROR,
        code="upstream_unavailable",
    )
