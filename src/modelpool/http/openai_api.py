"""The OpenAI-compatible routes: ``/v1/models`` and the three model endpoints.

The model endpoints bypass FastAPI (``DirectRoutes``): the body is read as bytes and
only ``model`` is looked at, so a request costs little on top of the model's own
server, and fields this server has never heard of pass through untouched.

A request served by another model than the one it named (its ``fallback``: the pool
says so in the lease) is re-encoded for that model and answered with the header
``x-modelpool-served-by``; a stream that waited says it in an SSE comment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from modelpool.core.lease import Lease
from modelpool.core.pool import ModelPool
from modelpool.core.states import ModelState
from modelpool.errors import LoadFailed, ModelPoolError, QueueFull, WaitTimeout
from modelpool.http import local_models
from modelpool.http.errors import SERVER_ERROR, ApiError, error_response, from_pool_error
from modelpool.http.load_eta import load_retry_after
from modelpool.http.loading_stream import LoadingStream
from modelpool.http.proxy import RelayResponse, forward, wait_for_disconnect
from modelpool.http.request_json import json_object
from modelpool.http.served import ENDPOINTS, served, serves
from modelpool.http.state import ServerState

T = TypeVar("T")
log = logging.getLogger("modelpool.http")

WATCH_AFTER = 0.05
"""Seconds a request waits before its client's connection is watched for a disconnect."""
STICKY_HEADER = "x-sticky-key"
"""Requests with the same value (else the same ``user`` field) see the same version."""
SERVED_BY_HEADER = "x-modelpool-served-by"
"""On an answer from another model than the one asked for (its fallback): that model."""


class ClientGone(Exception):
    """The client disconnected while its request waited: nobody reads an answer."""


def routes(state: ServerState) -> list[Route]:
    """The routes FastAPI serves here; ``DirectRoutes`` serves the model endpoints."""

    async def list_models(request: Request) -> Response:
        return JSONResponse(_model_list(state))

    return [Route("/v1/models", list_models, methods=["GET"])]


class DirectRoutes:
    """``POST /v1/<endpoint>`` straight to its handler; everything else to ``app``.

    The proxied requests skip FastAPI's middleware stack and router: ``_handle``
    already turns every error it expects into an OpenAI-shaped answer, and anything
    else raised before the response starts is answered 500 here, as the app would.
    """

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app, self.state = app, state
        self.paths = {f"/v1/{path}": path for path in ENDPOINTS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = self.paths.get(scope["path"]) if scope["type"] == "http" else None
        if path is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            message = f"Use POST for /v1/{path}"
            await error_response(405, message, code="method_not_allowed")(scope, receive, send)
            return
        try:
            response = await _handle(self.state, Request(scope, receive, send), path)
        except Exception:
            log.exception("POST /v1/%s failed", path)
            response = error_response(500, "Internal server error", kind=SERVER_ERROR)
        await response(scope, receive, send)


def _model_list(state: ServerState) -> dict[str, Any]:
    created = int(state.started_at)
    data = [
        {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": "modelpool",
            "state": str(state.pool.state(model_id)),
            "aliases": list(spec.aliases),
            "endpoints": list(served(spec)),
        }
        for model_id, spec in state.pool.specs.items()
    ]
    return {"object": "list", "data": data}


class _Exchange:
    """One request's bookkeeping: its lease and metrics, finished exactly once."""

    __slots__ = ("endpoint", "finished", "lease", "model", "started", "state")

    def __init__(self, state: ServerState, endpoint: str) -> None:
        self.state, self.endpoint = state, endpoint
        self.model = "unknown"  # a label from the pool's ids only, never the client's text
        self.started = time.perf_counter()
        self.lease: Any = None
        self.finished = False

    def finish(self, status: int, fine: bool = True) -> None:
        if self.finished:
            return
        self.finished = True
        if self.lease is not None:
            self.state.pool.release(self.lease, ok=fine)
        metrics = self.state.metrics
        if metrics is not None:
            seconds = time.perf_counter() - self.started
            metrics.observe_request(self.model, self.endpoint, status, seconds)


Answer = Response | RelayResponse | LoadingStream


async def _handle(state: ServerState, request: Request, path: str) -> Answer:
    exchange = _Exchange(state, path)
    try:
        response = await _answer(state, request, path, exchange)
    except ApiError as error:
        exchange.finish(error.status)  # an upstream failure was already counted as one
        return error.response()
    except (ClientGone, ClientDisconnect):  # nobody reads an answer: a quiet 499
        exchange.finish(499)
        return Response(status_code=499)
    except asyncio.CancelledError:  # the server is stopping: not the model's fault
        exchange.finish(499)
        raise
    except BaseException:
        exchange.finish(500, False)
        raise
    if not isinstance(response, (RelayResponse, LoadingStream)):  # ends after its last chunk
        exchange.finish(response.status_code, response.status_code < 500)
    return response


async def _answer(state: ServerState, request: Request, path: str, exchange: _Exchange) -> Answer:
    body = await request.body()
    payload = json_object(body)
    name = payload.get("model")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "'model' is required and must be a string", param="model")
    pool = state.pool
    user = payload.get("user")
    key = request.headers.get(STICKY_HEADER) or (user if isinstance(user, str) else None)
    try:
        routed = pool.route(name, key)  # the version this request goes to, if versioned
        model_id = pool.resolve(routed)
    except ModelPoolError as error:
        raise from_pool_error(error) from None
    exchange.model = model_id
    spec = pool.spec(model_id)
    if not serves(spec, path):  # before any scheduling: nothing loads for a 400
        raise _not_served(model_id, path, served(spec))
    asked = payload
    if spec.defaults or name != model_id:
        payload = {**spec.defaults, **payload, "model": model_id}
        body = json.dumps(payload).encode()
    request_for = _Request(model_id, path, asked, payload, body)
    try:
        if pool.state(model_id) is ModelState.READY:
            lease = await pool.acquire(routed)  # resident: granted without waiting
        elif payload.get("stream") is True and path != "embeddings":
            return _loading_stream(state, routed, request_for, exchange)
        else:
            lease = await _unless_client_leaves(request.receive, pool.acquire(routed))
    except ModelPoolError as error:
        raise _refused(pool, model_id, error) from None
    exchange.lease = lease
    body = request_for.to(pool, lease, exchange)
    if lease.endpoint is not None:
        answer = await _unless_client_leaves(
            request.receive,
            forward(state.http, lease, path, body, exchange.finish, state.upstream_errors),
        )
        return _marked(answer, model_id, lease)
    if path != "embeddings":  # a plugin's in-process model: known only once loaded
        raise _not_served(lease.model_id, path, ("embeddings",))
    return _marked(JSONResponse(await local_models.embeddings(lease, payload)), model_id, lease)


class _Request:
    """What a client asked of ``model_id``, kept to re-encode it for whoever serves it."""

    __slots__ = ("asked", "body", "model_id", "path", "payload")

    def __init__(
        self,
        model_id: str,
        path: str,
        asked: dict[str, Any],
        payload: dict[str, Any],
        body: bytes,
    ) -> None:
        self.model_id, self.path = model_id, path
        self.asked, self.payload, self.body = asked, payload, body
        """``asked``: as the client sent it; ``payload``/``body``: with the model's defaults."""

    def to(self, pool: ModelPool, lease: Lease, exchange: _Exchange) -> bytes:
        """The body for the lease's server: as prepared, or re-encoded when another model
        serves (a fallback: its defaults and its id) or the server knows the model by
        another name (a remote's ``model:``). A fallback's requests count as its own."""
        served_by = lease.model_id
        access = lease.handle.upstream
        name = access.model if access is not None and access.model else served_by
        if served_by != self.model_id:
            exchange.model = served_by
            spec = pool.spec(served_by)
            if not serves(spec, self.path):
                raise ApiError(
                    503,
                    f"The model {self.model_id!r} cannot load and its fallback "
                    f"{served_by!r} does not serve /v1/{self.path}",
                    kind=SERVER_ERROR,
                    code="fallback_not_served",
                )
            payload = {**spec.defaults, **self.asked}
        elif name != self.model_id:
            payload = self.payload
        else:
            return self.body
        return json.dumps({**payload, "model": name}).encode()


def _marked(answer: T, model_id: str, lease: Lease) -> T:
    """``answer`` with ``x-modelpool-served-by`` when another model served it."""
    if lease.model_id == model_id:
        return answer
    if isinstance(answer, RelayResponse):
        answer.headers.append((SERVED_BY_HEADER.encode(), lease.model_id.encode()))
    elif isinstance(answer, Response):
        answer.headers[SERVED_BY_HEADER] = lease.model_id
    return answer


def _loading_stream(
    state: ServerState, routed: str, request_for: _Request, exchange: _Exchange
) -> LoadingStream:
    """The answer to a streamed request that waits for its model: kept alive meanwhile."""
    pool, model_id, path = state.pool, exchange.model, request_for.path

    async def leased() -> Lease:
        lease = await pool.acquire(routed)
        exchange.lease = lease  # where ``finish`` returns it
        return lease

    async def answer(lease: Lease) -> Response | RelayResponse:
        body = request_for.to(pool, lease, exchange)
        if lease.endpoint is None:  # a plugin's in-process model: known only once loaded
            raise _not_served(lease.model_id, path, ("embeddings",))
        return await forward(state.http, lease, path, body, exchange.finish, state.upstream_errors)

    settings = state.settings
    return LoadingStream(
        model_id,
        leased(),
        answer,
        exchange.finish,
        every=settings.loading_keepalive,
        messages=settings.loading_messages and path == "chat/completions",
        refuse=lambda error: _refused(pool, model_id, error),
    )


def _refused(pool: ModelPool, model_id: str, error: ModelPoolError) -> ApiError:
    """The answer to a request the pool refused; one that gave up waiting for a load
    is told when the load should be over, one for a remote model that its server is
    not answering."""
    refusal = from_pool_error(error)
    if isinstance(error, WaitTimeout | QueueFull):
        expected = load_retry_after(pool, model_id)
        if expected is not None:
            refusal.retry_after = expected
    if isinstance(error, LoadFailed) and pool.spec(model_id).remote:
        refusal.message = (
            f"The remote server of model {model_id!r} is not answering its health check; "
            f"GET /admin/models/{model_id} has the details"
        )
        refusal.code = "remote_unavailable"
    return refusal


def _not_served(model_id: str, path: str, names: tuple[str, ...]) -> ApiError:
    what = f"its endpoints are {', '.join(names)}" if names else "it serves nothing"
    message = f"The model {model_id!r} does not serve /v1/{path}; {what}"
    return ApiError(400, message, param="model", code="unsupported_endpoint")


async def _unless_client_leaves(receive: Receive, work: Awaitable[T]) -> T:
    """``await work``, cancelled if the client disconnects first (``ClientGone``).

    The watch starts only once ``work`` has taken ``WATCH_AFTER`` seconds: a hot
    model's quick answer costs a timer, not a task, and a client that leaves a long
    generation is noticed that much later at most. The watcher cancels this task
    itself: no second task for ``work`` and no ``asyncio.wait``.
    """
    task = asyncio.current_task()
    assert task is not None
    watcher: asyncio.Future[None] | None = None
    waiting = True

    def client_left(gone: asyncio.Future[None]) -> None:
        if waiting and not gone.cancelled() and gone.exception() is None:
            task.cancel()

    def watch() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        watcher.add_done_callback(client_left)

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER, watch)
    try:
        return await work
    except asyncio.CancelledError:
        left = watcher is not None and watcher.done() and not watcher.cancelled()
        if left and task.uncancel() == 0:
            raise ClientGone from None
        raise
    finally:
        waiting = False
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
