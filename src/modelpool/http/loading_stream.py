"""A streamed request that must wait for its model to load: answered at once, kept alive.

A model's load takes seconds to minutes; a client that sent ``"stream": true`` and hears
nothing meanwhile may give up (a read timeout of its own, or a proxy's). So such a
request gets its 200 and SSE headers at once, then an SSE comment line
(``: loading smollm2 (3 s)``) every ``server.loading_keepalive`` seconds, which every
SSE client skips, and, with ``server.loading_messages``, the same news as
``reasoning_content`` deltas of a chat-completion chunk (as llama-swap's
``sendLoadingState`` does), which chat front ends show as the model's thinking. Once
the model serves, its stream is relayed as any other (``RelayResponse``).

The 200 has gone out before anyone knows how the load ends, so a load that fails, or a
wait that times out, is told as proxy.py tells a stream a model's server broke off: an
SSE ``error`` event in OpenAI's shape, then the body is aborted without ``[DONE]``
(``StreamBroken``), so the ``openai`` package raises instead of handing over nothing.

Only a request that waits comes here: a resident model's stream is relayed directly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from modelpool.core.lease import Lease
from modelpool.errors import ModelPoolError
from modelpool.http.errors import ApiError, from_pool_error
from modelpool.http.proxy import Done, RelayResponse, StreamBroken, error_event
from modelpool.http.proxy import wait_for_disconnect as client_gone

Answer = Response | RelayResponse

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each line on, do not buffer the stream
]


def comment(model_id: str, seconds: float) -> bytes:
    """The keep-alive line: an SSE comment, which clients skip."""
    return f": loading {model_id} ({int(seconds)} s)\n\n".encode()


def progress_chunk(model_id: str, seconds: float, first: bool, now: float) -> bytes:
    """The same news as a chat-completion chunk whose delta is ``reasoning_content``."""
    text = f"Loading {model_id}..." if first else f" {int(seconds)} s..."
    delta: dict[str, str] = {"role": "assistant"} if first else {}
    delta["reasoning_content"] = text
    chunk = {
        "id": f"loading-{model_id}",
        "object": "chat.completion.chunk",
        "created": int(now),
        "model": model_id,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


class LoadingStream:
    """The ASGI response for a streamed request whose model is not resident yet.

    ``lease`` waits for the model (and records the lease where ``finish`` returns it);
    ``answer`` forwards the request on it (owning ``finish`` from then on, as ``forward``
    does); ``finish`` ends the exchange, safe to call more than once.
    """

    def __init__(
        self,
        model_id: str,
        lease: Awaitable[Lease],
        answer: Callable[[Lease], Awaitable[Answer]],
        finish: Done,
        *,
        every: float,
        messages: bool,
        clock: Callable[[], float] = time.monotonic,
        refuse: Callable[[ModelPoolError], ApiError] = from_pool_error,
    ) -> None:
        """``refuse``: the answer to the pool's refusal (its error event's content)."""
        self.model_id, self.lease, self.answer, self.finish = model_id, lease, answer, finish
        self.every, self.messages, self.clock = every, messages, clock
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        waiting = asyncio.ensure_future(self.lease)
        waiting.add_done_callback(_retrieved)  # an error after the client left is no news
        watcher = asyncio.ensure_future(client_gone(receive))
        handed_over = False

        def client_left(gone: asyncio.Future[None]) -> None:
            if not handed_over and not gone.cancelled():
                task.cancel()

        watcher.add_done_callback(client_left)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            lease = await self._keep_alive(waiting, send)
            if lease.model_id != self.model_id:  # its fallback serves: the headers are gone
                note = f": served by {lease.model_id} ({self.model_id} cannot load)\n\n"
                await send({"type": "http.response.body", "body": note.encode(), "more_body": True})
            try:
                answer = await self.answer(lease)
            except ApiError as error:  # the model's server did not answer
                await self._fail(send, error)
            handed_over = True  # the relay watches the client itself from here
            watcher.cancel()
            await self._pass_on(answer, scope, receive, send)
        except asyncio.CancelledError:
            self.finish(499, True)  # returns a lease granted meanwhile
            gone = watcher.done() and not watcher.cancelled()
            if not gone or task.uncancel() > 0:
                raise  # a cancellation of our own caller (shutdown), not the client leaving
        except StreamBroken:
            raise
        except BaseException:
            self.finish(500, False)
            raise
        finally:
            watcher.cancel()
            waiting.cancel()  # a no-op once it is done; else the pool forgets the wait

    async def _keep_alive(self, waiting: asyncio.Future[Lease], send: Send) -> Lease:
        """The lease, once granted; meanwhile a comment (and news) every ``every`` s."""
        started = self.clock()
        await self._tell(send, 0.0, first=True)
        while not waiting.done():
            await asyncio.wait((waiting,), timeout=self.every)
            if not waiting.done():
                await self._tell(send, self.clock() - started, first=False)
        try:
            return waiting.result()
        except ModelPoolError as error:
            await self._fail(send, self.refuse(error))

    async def _tell(self, send: Send, seconds: float, *, first: bool) -> None:
        body = comment(self.model_id, seconds)
        if self.messages:
            body += progress_chunk(self.model_id, seconds, first, time.time())
        await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _fail(self, send: Send, error: ApiError) -> NoReturn:
        """Tell the client why there is no answer, and abort the body."""
        self.finish(error.status, True)  # a no-op when ``forward`` counted it already
        event = error_event(error.body())
        await send({"type": "http.response.body", "body": event, "more_body": True})
        raise StreamBroken(f"model {self.model_id!r}: {error.message}")

    async def _pass_on(self, answer: Answer, scope: Scope, receive: Receive, send: Send) -> None:
        if isinstance(answer, RelayResponse):

            async def body_only(message: Message) -> None:
                if message["type"] != "http.response.start":  # ours went out already
                    await send(message)

            await answer(scope, receive, body_only)
            return
        # The model's server answered without streaming: an error, or a whole answer.
        if answer.status_code >= 400:
            await send({"type": "http.response.body", "body": b"\n\nevent: error\ndata: "
                        + bytes(answer.body) + b"\n\n", "more_body": True})  # fmt: skip
            raise StreamBroken(f"model {self.model_id!r} answered {answer.status_code}")
        body = b"data: " + bytes(answer.body) + b"\n\ndata: [DONE]\n\n"
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _retrieved(waited: asyncio.Future[Lease]) -> None:
    if not waited.cancelled():
        waited.exception()
