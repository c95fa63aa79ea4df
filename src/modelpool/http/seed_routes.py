"""Seed 003's REST paths, as aliases of the ``/admin`` routes that do the work.

=================================  ==========================================
seed 003                           served by
=================================  ==========================================
``POST /models``                   ``POST /admin/models/{model}/versions``
``POST /switch``                   ``POST /admin/rollouts``
``GET /switch/operations/{id}``    ``GET /admin/rollouts/{id}``
``GET /health/models``             ``GET /admin/health``
``GET /alerts``                    ``GET /admin/alerts``
=================================  ==========================================

An alias translates the seed's body to the admin route's and hands the request to the
application again under the admin path, so both answer alike: the same validation,
errors, answers and whatever the admin routes record. The API-key guard sees the
seed's path, which ``security.ADMIN_PREFIXES`` lists beside ``/admin``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelpool.compat.model_switching import registration, strategy_name
from modelpool.http.errors import error_response

SEED_PATHS = ("/models", "/switch", "/health/models", "/alerts")
"""The paths the aliases answer under (prefixes: operations are under ``/switch``)."""

Translate = Callable[[Mapping[str, str], Any], tuple[str, Any]]
"""(path parameters, the JSON body or None) -> (the admin path, its JSON body or None)."""


class BadSeedRequest(ValueError):
    """The seed's body cannot be translated: the message says what is wrong, ``param``
    where."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def routes(app: ASGIApp) -> list[BaseRoute]:
    """The seed's routes, each handing its request to ``app`` under the admin path."""
    return [
        Route("/models", Alias(app, _register, reads_body=True), methods=["POST"]),
        Route("/switch", Alias(app, _switch, reads_body=True), methods=["POST"]),
        Route("/switch/operations/{operation_id}", Alias(app, _operation), methods=["GET"]),
        Route("/health/models", Alias(app, _fixed("/admin/health")), methods=["GET"]),
        Route("/alerts", Alias(app, _fixed("/admin/alerts")), methods=["GET"]),
    ]


class Alias:
    """An ASGI app serving one seed path by its admin route."""

    def __init__(self, app: ASGIApp, translate: Translate, *, reads_body: bool = False) -> None:
        self.app, self.translate, self.reads_body = app, translate, reads_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body: Any = None
        if self.reads_body:
            raw = await _read_body(receive)
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = _NOT_JSON
        try:
            if body is _NOT_JSON or (self.reads_body and not isinstance(body, dict)):
                raise BadSeedRequest("the body must be a JSON object")
            path, new_body = self.translate(scope.get("path_params", {}), body)
        except BadSeedRequest as error:
            await error_response(422, str(error), param=error.param)(scope, receive, send)
            return
        forwarded = {
            key: value
            for key, value in scope.items()
            if key not in ("path_params", "endpoint", "route")
        }
        forwarded["path"], forwarded["raw_path"] = path, path.encode()
        if new_body is None:
            await self.app(forwarded, receive, send)
            return
        payload = json.dumps(new_body).encode()
        forwarded["headers"] = [
            (name, value) for name, value in scope["headers"] if name != b"content-length"
        ] + [(b"content-length", str(len(payload)).encode())]
        await self.app(forwarded, _replay(payload, receive), send)


_NOT_JSON = object()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(payload: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``payload`` as the body, then what the client sends."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return await receive()

    return replayed


def _register(_: Mapping[str, str], body: Any) -> tuple[str, Any]:
    """``{model_id | model_arch + model_stage, version, metadata, ...settings}``."""
    data = dict(body)
    version = data.pop("version", None)
    if not isinstance(version, str) or not version:
        raise BadSeedRequest('version: a version name is required, e.g. "v2.0"', "version")
    metadata = data.pop("metadata", None)
    if metadata is not None and not isinstance(metadata, dict):
        raise BadSeedRequest("metadata: expected an object", "metadata")
    settings = data.pop("settings", None)
    if settings is not None and not isinstance(settings, dict):
        raise BadSeedRequest("settings: expected an object", "settings")
    try:
        entry = registration({**data, **(settings or {})}, version, metadata)
    except ValueError as error:
        raise BadSeedRequest(str(error).removeprefix("register_model: "), "model_id") from None
    forwarded = {
        "version": entry.version,
        "settings": entry.settings,
        "author": entry.author,
        "notes": entry.notes,
    }
    return f"/admin/models/{quote(entry.model, safe='')}/versions", forwarded


def _switch(_: Mapping[str, str], body: Any) -> tuple[str, Any]:
    """``{model_id, target_version, strategy, strategy_config}``; other keys are passed
    on, for the admin route to name."""
    data = dict(body)
    forwarded = {"model": data.pop("model_id", data.pop("model", None))}
    if "strategy" in data:
        forwarded["strategy"] = strategy_name(str(data.pop("strategy")))
    if "strategy_config" in data:
        forwarded["config"] = data.pop("strategy_config")
    return "/admin/rollouts", {**forwarded, **data}


def _operation(params: Mapping[str, str], _: Any) -> tuple[str, Any]:
    return f"/admin/rollouts/{quote(params['operation_id'], safe='')}", None


def _fixed(path: str) -> Translate:
    def translate(_: Mapping[str, str], __: Any) -> tuple[str, Any]:
        return path, None

    return translate
