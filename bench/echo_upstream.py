"""A tiny OpenAI-compatible server that answers at once, for timing what sits in front.

    python bench/echo_upstream.py --host 127.0.0.1 --port N [--chunks 16] [--delay S]

``GET /health``, ``GET /v1/models``; ``POST /v1/chat/completions`` and
``POST /v1/completions`` answer a canned completion, or with ``"stream": true`` an SSE
stream of ``--chunks`` ``data:`` events then ``data: [DONE]``, one event per chunk of a
chunked body and one write per event (the loop is yielded between them, so each leaves
as its own segment, as an LLM's tokens do). ``--delay S`` holds every completion
about S seconds (uniformly 0.5 S to 1.5 S, seeded) before its first byte, as a model's
generation would. Anything else is 404.

Plain HTTP/1.1 on an ``asyncio.Protocol``, keep-alive (HTTP/1.0 and
``Connection: close`` get one answer, then the connection closes), bodies by ``Content-Length``
only: no framework, so that nearly all the time a request takes through a proxy is the
proxy's. It prints ``listening on http://HOST:PORT`` once it listens, and stops cleanly
on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
from typing import Any

COMPLETION = {
    "id": "chatcmpl-echo",
    "object": "chat.completion",
    "created": 0,
    "model": "echo",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! This is the echo upstream."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
}
MODELS = {"object": "list", "data": [{"id": "echo", "object": "model", "owned_by": "bench"}]}
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n".encode()
    return head + b"content-type: " + content_type + b"\r\n\r\n" + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream_chunks(count: int) -> list[bytes]:
    """The SSE events of a streamed answer, each framed as one chunk, then the last chunk."""
    events = []
    for i in range(count):
        delta = {"content": f"tok{i} "} if i else {"role": "assistant", "content": ""}
        event = {
            "id": "chatcmpl-echo",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "echo",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        events.append(chunk(b"data: " + json.dumps(event).encode() + b"\n\n"))
    return [*events, chunk(b"data: [DONE]\n\n"), b"0\r\n\r\n"]


class Answers:
    """Every answer, encoded once."""

    def __init__(self, chunks: int) -> None:
        self.health = response("200 OK", b'{"status":"ok"}')
        self.models = response("200 OK", json.dumps(MODELS).encode())
        self.completion = response("200 OK", json.dumps(COMPLETION).encode())
        self.stream = stream_chunks(chunks)
        self.not_found = response("404 Not Found", b'{"error":{"message":"not found"}}')
        self.bad = response("400 Bad Request", b'{"error":{"message":"bad request"}}')
        self.jitter = random.Random(0)


class EchoProtocol(asyncio.Protocol):
    """One connection: requests parsed from a buffer, answered in order."""

    def __init__(self, answers: Answers, delay: float) -> None:
        self.answers, self.delay = answers, delay
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.pending: asyncio.Task[None] | None = None
        """The answer being sent later (a stream, or one held by ``--delay``)."""
        self.close_after = False
        """The client asked for one answer only (HTTP/1.0 or ``Connection: close``)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.pending is not None:
            self.pending.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.pending is None:
            self.serve_buffered()

    def serve_buffered(self) -> None:
        """Answer every complete request in the buffer, until a stream has to wait."""
        while self.transport is not None and self.pending is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, target, version = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.answer(method, target, body)
            connection = headers.get("connection", "").lower()
            if connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive"):
                self.close_after = True
            if self.close_after and self.pending is None:
                self.transport.close()

    def answer(self, method: str, target: str, body: bytes) -> None:
        assert self.transport is not None
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/health":
            self.transport.write(self.answers.health)
        elif method == "GET" and path == "/v1/models":
            self.transport.write(self.answers.models)
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            try:
                request: Any = json.loads(body)
            except ValueError:
                self.transport.write(self.answers.bad)
                return
            stream = isinstance(request, dict) and request.get("stream") is True
            if stream or self.delay:
                self.pending = asyncio.ensure_future(self.send_later(stream))
            else:
                self.transport.write(self.answers.completion)
        else:
            self.transport.write(self.answers.not_found)

    async def send_later(self, stream: bool) -> None:
        """A delayed answer or a stream: later requests on the connection wait for it."""
        transport = self.transport
        assert transport is not None
        if self.delay:
            # Spread around the mean, as generation times are: a fixed delay would answer
            # every connection in the same instant and time bursts, not the proxy.
            await asyncio.sleep(self.delay * self.answers.jitter.uniform(0.5, 1.5))
        if transport.is_closing():
            return
        if not stream:
            transport.write(self.answers.completion)
        else:
            transport.write(STREAM_HEAD)
            for part in self.answers.stream:
                await asyncio.sleep(0)
                if transport.is_closing():
                    return
                transport.write(part)
        self.pending = None
        if self.close_after:
            transport.close()
        else:
            self.serve_buffered()


async def serve(host: str, port: int, chunks: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers(chunks)
    server = await loop.create_server(
        lambda: EchoProtocol(answers, delay), host, port, backlog=1024
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=16, help="data events in a stream")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before an answer")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.chunks, args.delay))


if __name__ == "__main__":
    main()
