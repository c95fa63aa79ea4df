"""``modelpool.ray.asgi``: an ASGI application driven in-process, as a pool replica on
Ray drives the server's own app (no Ray needed: that module imports none)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from modelpool.ray.asgi import AppFailed, HttpCall, HttpHead, Lifespan, call


async def collect(app: object, request: HttpCall) -> list[HttpHead | bytes]:
    return [part async for part in call(app, request)]  # type: ignore[arg-type]


async def echo(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"got": body, "query": request.url.query}, status_code=201)


async def test_a_request_gets_its_head_then_its_body() -> None:
    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    request = HttpCall("POST", "/echo", b"x=1", [(b"content-type", b"application/json")], b"[1]")
    head, *body = await collect(app, request)
    assert isinstance(head, HttpHead)
    assert head.status == 201
    assert (b"content-type", b"application/json") in head.headers
    assert b"".join(body) == b'{"got":[1],"query":"x=1"}'  # type: ignore[arg-type]


async def chunks_then(error: Exception | None, scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for chunk in (b"a", b"b"):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if error is not None:
        raise error
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def test_a_stream_comes_chunk_by_chunk() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await chunks_then(None, scope, receive, send)

    parts = await collect(app, HttpCall("GET", "/"))
    assert parts == [HttpHead(200, []), b"a", b"b"]


async def test_an_app_failing_mid_stream_raises_after_what_it_sent() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await chunks_then(RuntimeError("broke off"), scope, receive, send)

    parts = call(app, HttpCall("GET", "/"))
    seen = [await anext(parts) for _ in range(3)]
    assert seen == [HttpHead(200, []), b"a", b"b"]
    with pytest.raises(AppFailed, match="broke off"):
        await anext(parts)


async def test_an_app_failing_before_answering_raises_its_error() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError("nothing")

    with pytest.raises(LookupError, match="nothing"):
        await collect(app, HttpCall("GET", "/"))


async def test_leaving_early_is_a_disconnect_to_the_app() -> None:
    left = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        if (await receive())["type"] == "http.disconnect":
            left.set()

    parts = call(app, HttpCall("GET", "/"))
    assert isinstance(await anext(parts), HttpHead)
    assert await anext(parts) == b"first"
    await parts.aclose()
    async with asyncio.timeout(5):
        await left.wait()


async def test_the_lifespan_runs_startup_and_shutdown() -> None:
    phases: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        phases.append("start")
        yield
        phases.append("stop")

    span = Lifespan(Starlette(lifespan=lifespan))
    await span.startup()
    assert phases == ["start"]
    await span.shutdown()
    assert phases == ["start", "stop"]


async def test_a_failing_startup_says_so() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no budget")
        yield

    with pytest.raises(RuntimeError, match="startup failed"):
        await Lifespan(Starlette(lifespan=lifespan)).startup()
