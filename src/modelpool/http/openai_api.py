"""The OpenAI-compatible routes: ``/v1/models`` and the three model endpoints.

The model endpoints bypass FastAPI (``DirectRoutes``): the body is read as bytes and
only ``model`` is looked at, so a request costs little on top of the model's own
server, and fields this server has never heard of pass through untouched.
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

from modelpool.core.states import ModelState
from modelpool.errors import ModelPoolError
from modelpool.http import local_models
from modelpool.http.errors import SERVER_ERROR, ApiError, error_response, from_pool_error
from modelpool.http.proxy import RelayResponse, forward, wait_for_disconnect
from modelpool.http.request_json import json_object
from modelpool.http.served import ENDPOINTS, serves
from modelpool.http.state import ServerState

T = TypeVar("T")
log = logging.getLogger("modelpool.http")

WATCH_AFTER = 0.05
"""Seconds a request waits before its client's connection is watched for a disconnect."""
STICKY_HEADER = "x-sticky-key"
"""Requests with the same value (else the same ``user`` field) see the same version."""


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


async def _handle(state: ServerState, request: Request, path: str) -> Response | RelayResponse:
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
    if not isinstance(response, RelayResponse):  # a stream ends after its last chunk
        exchange.finish(response.status_code, response.status_code < 500)
    return response


async def _answer(
    state: ServerState, request: Request, path: str, exchange: _Exchange
) -> Response | RelayResponse:
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
    if not serves(spec.backend, path):  # before any scheduling: nothing loads for a 400
        raise _not_served(model_id, path)
    if spec.defaults or name != model_id:
        payload = {**spec.defaults, **payload, "model": model_id}
        body = json.dumps(payload).encode()
    try:
        if pool.state(model_id) is ModelState.READY:
            lease = await pool.acquire(routed)  # resident: granted without waiting
        else:
            lease = await _unless_client_leaves(request.receive, pool.acquire(routed))
    except ModelPoolError as error:
        raise from_pool_error(error) from None
    exchange.lease = lease
    if lease.endpoint is not None:
        return await _unless_client_leaves(
            request.receive,
            forward(state.http, lease, path, body, exchange.finish, state.upstream_errors),
        )
    if path != "embeddings":  # a plugin's in-process model: known only once loaded
        raise _not_served(model_id, path)
    return JSONResponse(await local_models.embeddings(lease, payload))


def _not_served(model_id: str, path: str) -> ApiError:
    return ApiError(400, f"The model {model_id!r} does not serve /v1/{path}", param="model")


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
