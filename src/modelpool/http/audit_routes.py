"""The one place where ``/admin`` routes write the audit log.

A route is audited by naming its operation under its path (one line per operation)::

    @api.post("/models/{model}/load")
    @audited("load")
    async def load(model: str) -> dict[str, Any]: ...

and a router made with ``APIRouter(route_class=audited_routes(audit))`` records each
such route once it has answered or failed: the caller, what was asked (the few fields
that say it: model, version, strategy, settings...), and the outcome with its HTTP
status. Requests the gate refuses (a missing key, a body too large) never reach a
route: the access log has those.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from modelpool.http.audit import AuditLog, Caller
from modelpool.http.errors import ApiError, bounded, invalid_request_message
from modelpool.http.security import presented_key

OPERATION = "__modelpool_audited__"
"""The attribute ``audited`` sets on a route's function: the operation's name."""
FIELDS = {
    "model": "model",
    "version": "version",
    "target_version": "version",
    "strategy": "strategy",
    "settings": "settings",
    "config": "settings",
    "options": "settings",
    "operation_id": "operation_id",
    "priority": "priority",
    "wait": "wait",
    "author": "author",
}
"""What an entry keeps of a request (path, query and JSON body), under which name."""
VALUE_LIMIT = 2000
"""Characters of one request field (its JSON) an entry keeps."""
SECRET_NAME = re.compile(r"key|token|secret|passw|credential|auth", re.IGNORECASE)
"""Settings under such names (``env: {HF_TOKEN: ...}``) are written as ``<redacted>``."""
REDACTED = "<redacted>"
CLIENT_LEFT = 499
"""The status an entry gets when the client left before the answer (nginx's number)."""

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
F = TypeVar("F", bound=Callable[..., Any])


def audited(operation: str) -> Callable[[F], F]:
    """Mark a route's function as the operation ``operation`` for the audit log."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, OPERATION, operation)
        return endpoint

    return mark


def audited_routes(audit: AuditLog | None) -> type[APIRoute]:
    """The ``route_class`` of a router whose ``@audited`` routes write to ``audit``
    (None: a server without an audit log; routes are plain)."""
    if audit is None:
        return APIRoute
    return type("AuditedRoute", (_AuditedRoute,), {"audit": audit})


class _AuditedRoute(APIRoute):
    audit: ClassVar[AuditLog]

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        operation = getattr(self.endpoint, OPERATION, None)
        if operation is None:
            return handler
        audit = self.audit

        async def audited_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except (Exception, asyncio.CancelledError) as error:
                status, message = _failure(error)
                # Cancelled: the task must not wait again; the path still names the model.
                left = isinstance(error, asyncio.CancelledError)
                asked = summary(request, b"" if left else await _body(request))
                audit.record(operation, caller(request), asked, status, message)
                raise
            status = response.status_code
            problem = _message(response) if status >= 400 else None
            asked = summary(request, await _body(request))
            audit.record(operation, caller(request), asked, status, problem)
            return response

        return audited_handler


def caller(request: Request) -> Caller:
    """The remote address and the fingerprint of the key the request carries."""
    address = request.client.host if request.client is not None else None
    return Caller.of(address, presented_key(dict(request.scope["headers"])))


def summary(request: Request, body: bytes) -> dict[str, Any]:
    """What was asked: the known fields of the JSON body, query and path (the path's
    win), each bounded, secrets redacted."""
    given: dict[str, Any] = {}
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            given.update(parsed)
    given.update(request.query_params)
    given.update(request.path_params)
    kept: dict[str, Any] = {}
    for name, value in given.items():
        field = FIELDS.get(name)
        if field is not None:
            kept[field] = _bounded(_redacted(value))
    return kept


async def _body(request: Request) -> bytes:
    """The body FastAPI has read (Starlette keeps it), or whatever is left to read;
    nothing when the client left meanwhile: the route's own answer says so."""
    try:
        return await request.body()
    except Exception:  # ClientDisconnect, a stream already read: not the log's business
        return b""


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            name: REDACTED if SECRET_NAME.search(str(name)) else _redacted(inner)
            for name, inner in value.items()
        }
    if isinstance(value, list):
        return [_redacted(inner) for inner in value]
    return value


def _bounded(value: Any) -> Any:
    text = json.dumps(value, default=str)
    return value if len(text) <= VALUE_LIMIT else bounded(text, VALUE_LIMIT)


def _failure(error: BaseException) -> tuple[int, str]:
    """The status and message the client got for ``error`` (as the app's handlers answer)."""
    if isinstance(error, ApiError):
        return error.status, error.message
    if isinstance(error, RequestValidationError):
        return 422, invalid_request_message(error.errors())[0]
    if isinstance(error, HTTPException):
        return error.status_code, str(error.detail)
    if isinstance(error, asyncio.CancelledError):
        return CLIENT_LEFT, "the client left before the answer; the operation may go on"
    return 500, f"internal error: {type(error).__name__}: {error}"


def _message(response: Response) -> str:
    """``error.message`` of an error answer a route returned rather than raised."""
    try:
        answer = json.loads(bytes(getattr(response, "body", b"")))
        return str(answer["error"]["message"])
    except (ValueError, TypeError, KeyError):
        return f"HTTP {response.status_code}"
