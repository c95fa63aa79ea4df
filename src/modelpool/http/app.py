"""``create_app``: the ASGI application of ``modelpool serve`` around one pool.

The pool lives as long as the application: it starts in the lifespan's startup and
stops (every model unloaded, every backend process ended) in its shutdown, which
uvicorn runs after in-flight requests have drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp

from modelpool import __version__
from modelpool.config import AUTO_STRATEGY, AlertSettings, Config, ServerSettings
from modelpool.core.events import PoolEvent
from modelpool.core.pool import ModelPool
from modelpool.http import admin_api, openai_api, reload_api, rollout_api, seed_routes
from modelpool.http.audit import AuditLog
from modelpool.http.errors import SERVER_ERROR, ApiError, error_response, invalid_request_message
from modelpool.http.metrics import CONTENT_TYPE, ServerMetrics
from modelpool.http.proxy import Upstream
from modelpool.http.reloader import Reloader, no_reload_on_sighup
from modelpool.http.security import Guard
from modelpool.http.state import ServerState
from modelpool.http.upstream_errors import UpstreamErrorLog
from modelpool.http.webhooks import Webhooks
from modelpool.rollout import RolloutManager
from modelpool.sim.auto import AutoStrategy

LEASE_GRACE_SECONDS = 5.0


def create_app(
    pool: ModelPool,
    settings: ServerSettings,
    *,
    loopback: bool = True,
    rollouts: RolloutManager | None = None,
    alerts: AlertSettings | None = None,
    audit_path: str | os.PathLike[str] | None = None,
    config: Config | None = None,
    watch: bool = False,
    sighup: bool = False,
) -> ASGIApp:
    """The server for ``pool``. ``loopback``: bound to 127.0.0.1, so ``Host`` is checked.
    ``rollouts`` (default: one without a state file) routes between model versions;
    ``alerts``: the webhooks its health alerts are POSTed to; ``audit_path``: the audit
    log's file (None: operations are not recorded). ``config``: the config ``pool`` was
    built from; when its source is a file, ``/admin/reload`` reads it again, and so do
    SIGHUP (``sighup``) and any change of the file (``watch``)."""
    rollouts = rollouts if rollouts is not None else RolloutManager(pool)
    counters = ServerMetrics()
    state = ServerState(pool, settings, Upstream(), counters, rollouts=rollouts)
    if pool.settings.strategy == AUTO_STRATEGY:
        state.auto = AutoStrategy(pool)
    state.upstream_errors = UpstreamErrorLog(model_log=pool.log_note)
    webhooks = Webhooks(alerts or AlertSettings(), on_outcome=counters.observe_webhook)
    counters.add_webhooks(sender.host for sender in webhooks.senders)
    if audit_path is not None:
        state.audit = AuditLog(
            audit_path,
            max_bytes=settings.audit_max_bytes,
            keep=settings.audit_keep,
            on_failure=counters.audit_write_failed,
        )
    if config is not None and config.source and os.path.isfile(config.source):
        state.reloader = Reloader(
            pool, config, rollouts=rollouts, audit=state.audit, watch=watch, sighup=sighup
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Subscribed before the start, which loads pinned models: their events count too.
        feeding = asyncio.create_task(_feed_metrics(state, pool.events()))
        webhooks.start(rollouts.health)  # before the pool: every alert is heard
        await pool.start()
        await rollouts.start()
        if state.auto is not None:
            state.auto.start()
        state.loop = asyncio.get_running_loop()
        if state.reloader is not None:
            state.reloader.start()
        elif sighup:
            no_reload_on_sighup(state.loop)
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            state.draining.set()
            feeding.cancel()
            if state.reloader is not None:
                await state.reloader.stop()
            if state.auto is not None:
                await state.auto.stop()
            await rollouts.stop()
            # uvicorn has drained the connections by now (or given up on them); a lease
            # still out belongs to a request being cancelled, so wait only briefly.
            await pool.stop(drain_timeout=0 if state.forced else LEASE_GRACE_SECONDS)
            await webhooks.stop()
            await state.http.aclose()

    app = FastAPI(
        title="modelpool",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/admin/openapi.json",
    )
    app.state.modelpool = state
    _add_error_handlers(app)
    app.router.routes.extend(openai_api.routes(state))
    app.include_router(admin_api.router(state))
    app.include_router(reload_api.router(state))
    app.include_router(rollout_api.router(rollouts, state.audit))
    app.router.routes.extend(seed_routes.routes(app))  # seed 003's paths, served by /admin
    dashboard = resources.files("modelpool.http").joinpath("static/dashboard.html").read_text()

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if state.ready and not state.draining.is_set():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        assert state.metrics is not None
        body = state.metrics.render(pool.get_resource_status(), rollouts)
        return Response(body, media_type=CONTENT_TYPE)

    @app.get("/ui", include_in_schema=False)
    async def ui() -> HTMLResponse:
        return HTMLResponse(dashboard, headers={"cache-control": "no-cache"})

    return Guard(
        openai_api.DirectRoutes(app, state),
        api_keys=settings.api_keys,
        admin_keys=settings.admin_keys,
        allowed_hosts=settings.allowed_hosts if loopback else None,
        max_body=settings.max_body,
        allowed_origins=settings.allowed_origins,
    )


def server_state(app: ASGIApp) -> ServerState:
    """The shared state of an application ``create_app`` made."""
    assert isinstance(app, Guard)
    assert isinstance(app.app, openai_api.DirectRoutes)
    state = app.app.state
    assert isinstance(state, ServerState)
    return state


async def _feed_metrics(state: ServerState, events: AsyncIterator[PoolEvent]) -> None:
    assert state.metrics is not None
    async for event in events:
        state.metrics.observe_event(event)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error in OpenAI's shape, even a route that does not exist."""

    async def api_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return error.response()

    async def http_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
        return error_response(error.status_code, str(error.detail), code=code)

    async def invalid(_: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        message, where = invalid_request_message(error.errors())
        return error_response(422, message, param=where)

    async def crashed(_: Request, error: Exception) -> Response:
        # Logged with its trace by the server; the client learns nothing of the inside.
        return error_response(500, "Internal server error", kind=SERVER_ERROR)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crashed)
