"""The management API under ``/admin``: inspect models, load, unload, pin, strategy,
events, and the audit log of every operation (``@audited``).

Errors here carry the pool's full message (a failed load's reason and log tail
included): these routes are for operators, behind the admin key when one is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse, StreamingResponse

from modelpool.core.events import EventKind, PoolEvent
from modelpool.errors import ModelPoolError, PluginNotFound
from modelpool.http.audit_routes import audited, audited_routes
from modelpool.http.errors import ApiError, bounded, from_pool_error
from modelpool.http.state import ServerState

KEEP_ALIVE_SECONDS = 15.0
"""A comment line this often keeps proxies from closing a quiet event stream."""
LOG_LINES = 50
LOG_POLL_SECONDS = 0.25
"""How often a followed log is checked for new lines."""
ADMIN_ECHO_LIMIT = 4000


def router(state: ServerState) -> APIRouter:
    api = APIRouter(prefix="/admin", tags=["admin"], route_class=audited_routes(state.audit))
    pool = state.pool
    background: set[asyncio.Task[None]] = set()

    def view(model_id: str) -> dict[str, Any]:
        try:
            model_id = pool.resolve(model_id)
        except ModelPoolError as error:
            raise _admin_error(error) from None
        info = pool.get_resource_status()["model_resources"][model_id]
        return {"id": model_id, "aliases": list(pool.spec(model_id).aliases), **info}

    @api.get("/status")
    async def status() -> dict[str, Any]:
        return pool.get_resource_status()

    @api.get("/models")
    async def models() -> dict[str, Any]:
        resources = pool.get_resource_status()["model_resources"]
        return {
            "models": [
                {"id": model_id, "aliases": list(spec.aliases), **resources[model_id]}
                for model_id, spec in pool.specs.items()
            ]
        }

    @api.get("/models/{model}")
    async def model(model: str) -> dict[str, Any]:
        found = view(model)
        return {
            **found,
            "log_tail": pool.log_tail(model, LOG_LINES),
            "upstream_errors": state.upstream_errors.recent(found["id"]),
        }

    @api.get("/models/{model}/logs", response_model=None)
    async def logs(
        model: str, lines: Annotated[int, Query(ge=0, le=10_000)] = 100, follow: bool = False
    ) -> dict[str, Any] | StreamingResponse:
        """What the model's server printed: the last ``lines``; with ``follow``, then every
        new line as it comes (server-sent events, ``data: "<line>"``), until the model
        leaves (an ``end`` event) or the client does."""
        model_id = view(model)["id"]
        tail = pool.log_tail(model_id, lines)
        if not follow:
            return {"model": model_id, "lines": tail}
        return StreamingResponse(
            _follow_logs(state, model_id, tail),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    @api.post("/models/{model}/load", response_model=None)
    @audited("load")
    async def load(model: str, wait: bool = True) -> dict[str, Any] | JSONResponse:
        found = view(model)  # unknown ids fail here, before anything starts
        if not wait:
            task = asyncio.create_task(_load_quietly(state, found["id"]))
            background.add(task)
            task.add_done_callback(background.discard)
            await asyncio.sleep(0)  # the task's first step asks the pool: the view shows it
            return JSONResponse(view(model), status_code=202)
        try:
            await pool.load(found["id"])
        except ModelPoolError as error:
            raise _admin_error(error) from None
        return view(model)

    @api.post("/models/{model}/preload", response_model=None)
    @audited("preload")
    async def preload(
        model: str,
        priority: Annotated[int | None, Query(ge=0, le=100)] = None,
        wait: bool = True,
    ) -> dict[str, Any] | JSONResponse:
        """Load ahead of need, behind every request and only into room nobody needs;
        ``preloaded: false`` with the ``reason`` when it was skipped."""
        model_id = view(model)["id"]
        if not wait:
            task = asyncio.create_task(_preload_quietly(state, model_id, priority))
            background.add(task)
            task.add_done_callback(background.discard)
            await asyncio.sleep(0)
            return JSONResponse({"preloaded": None, "model": view(model)}, status_code=202)
        try:
            loaded = await pool.preload(model_id, priority)
        except ModelPoolError as error:
            raise _admin_error(error) from None
        reason = None if loaded else _skip_reason(state, model_id)
        return {"preloaded": loaded, "reason": reason, "model": view(model)}

    @api.post("/models/{model}/unload")
    @audited("unload")
    async def unload(model: str) -> dict[str, Any]:
        found = view(model)
        try:
            await pool.unload(found["id"])
        except ModelPoolError as error:
            raise _admin_error(error) from None
        return view(model)

    @api.post("/models/{model}/pin")
    @audited("pin")
    async def pin(model: str) -> dict[str, Any]:
        pool.pin(view(model)["id"])
        return view(model)

    @api.post("/models/{model}/unpin")
    @audited("unpin")
    async def unpin(model: str) -> dict[str, Any]:
        pool.unpin(view(model)["id"])
        return view(model)

    @api.get("/strategy")
    async def strategy_now() -> dict[str, Any]:
        """The strategy in force, why, and (``strategy: auto``) the last evaluation's table."""
        if state.auto is not None:
            return state.auto.status()
        return {
            "strategy": pool.strategy,
            "auto": False,
            "why": "fixed: auto is off (pool.strategy in the config, or PUT /admin/strategy)",
            "last": None,
        }

    @api.put("/strategy")
    @audited("strategy")
    async def strategy(
        name: Annotated[str, Body(alias="strategy", min_length=1)],
        options: Annotated[dict[str, Any] | None, Body()] = None,
    ) -> dict[str, Any]:
        try:
            pool.set_switching_strategy(name, options)
        except PluginNotFound as error:
            raise ApiError(400, str(error), param="strategy") from None
        except (TypeError, ValueError) as error:
            raise ApiError(400, f"options for {name!r}: {error}", param="options") from None
        return {"strategy": pool.strategy}

    @api.get("/events")
    async def events(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        return {"events": [event.to_dict() for event in pool.recent_events(limit)]}

    @api.get("/audit")
    async def audit(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """The newest ``limit`` operations, newest first."""
        if state.audit is None:
            return {"entries": [], "path": None}
        entries = await asyncio.to_thread(state.audit.recent, limit)  # reads files
        return {"entries": entries, "path": str(state.audit.path)}

    @api.get("/events/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(
            _event_stream(state),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    return api


async def _load_quietly(state: ServerState, model_id: str) -> None:
    """A load nobody waits for: its outcome is in the events and the model's view."""
    with contextlib.suppress(ModelPoolError):
        await state.pool.load(model_id)


async def _preload_quietly(state: ServerState, model_id: str, priority: int | None) -> None:
    """A preload nobody waits for: its outcome is in the events and the model's view."""
    with contextlib.suppress(ModelPoolError):
        await state.pool.preload(model_id, priority)


def _skip_reason(state: ServerState, model_id: str) -> str | None:
    """Why the last preload of ``model_id`` was skipped, from the pool's events."""
    for event in reversed(state.pool.recent_events()):
        if event.kind is EventKind.PRELOAD_SKIPPED and event.model_id == model_id:
            return str(event.detail.get("reason"))
    return None


async def _follow_logs(state: ServerState, model_id: str, tail: list[str]) -> AsyncIterator[bytes]:
    """The tail, then new lines as the server prints them (polled: output has no event)."""
    for line in tail:
        yield f"data: {json.dumps(line)}\n\n".encode()
    found = state.pool.log_since(model_id, 0)
    position = found[1] if found is not None else 0
    quiet = 0.0
    while not state.draining.is_set():
        found = state.pool.log_since(model_id, position)
        if found is None:
            yield b'event: end\ndata: "the model is not loaded"\n\n'
            return
        lines, position = found
        for line in lines:
            yield f"data: {json.dumps(line)}\n\n".encode()
        quiet = 0.0 if lines else quiet + LOG_POLL_SECONDS
        if quiet >= KEEP_ALIVE_SECONDS:  # a comment keeps proxies from closing an idle stream
            quiet = 0.0
            yield b": keep-alive\n\n"
        await asyncio.sleep(LOG_POLL_SECONDS)


async def _event_stream(state: ServerState) -> AsyncIterator[bytes]:
    """Server-sent events, one per pool event from now on, until the server drains."""
    events = state.pool.events()  # subscribes now: nothing between here and the loop is lost
    draining = asyncio.ensure_future(state.draining.wait())
    upcoming: asyncio.Future[PoolEvent] | None = None
    try:
        yield b": connected\n\n"
        while True:
            upcoming = upcoming or asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait(
                (upcoming, draining), timeout=KEEP_ALIVE_SECONDS, return_when="FIRST_COMPLETED"
            )
            if draining in done:
                return
            if upcoming not in done:
                yield b": keep-alive\n\n"
                continue
            try:
                event = upcoming.result()
            except StopAsyncIteration:  # the pool stopped
                return
            upcoming = None
            yield f"event: pool\ndata: {json.dumps(event.to_dict(), default=str)}\n\n".encode()
    finally:
        draining.cancel()
        if upcoming is not None:
            upcoming.cancel()  # ends the subscription: the generator's finally unsubscribes
        await _close(events)


async def _close(events: AsyncIterator[PoolEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        # RuntimeError: still running its cancelled step; it ends on its own.
        with contextlib.suppress(RuntimeError):
            await aclose()


def _admin_error(error: ModelPoolError) -> ApiError:
    answer = from_pool_error(error)
    # Operators get the whole story, but not a megabyte of a client's text echoed back.
    answer.message = bounded(str(error), ADMIN_ECHO_LIMIT)
    return answer
