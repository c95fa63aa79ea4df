"""Every error the server sends, in OpenAI's shape: ``{"error": {message, type, param, code}}``.

Clients (the ``openai`` package among them) read ``error.message`` and retry 429/5xx
answers, honouring ``Retry-After``. Messages name what was wrong and where, but never
carry a stack trace, a log tail or a filesystem path: load failures point to
``/admin/models/{id}``, where an operator with the admin key sees the details.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse

from modelpool.errors import (
    CapacityError,
    CircuitOpen,
    DoesNotFit,
    LoadFailed,
    ModelPoolError,
    ModelQueueFull,
    PoolClosed,
    QueueFull,
    UnknownModel,
    WaitTimeout,
)

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
SERVER_ERROR = "server_error"

RATE_LIMITED = "rate_limit_error"

RETRY_SECONDS = 5
"""``Retry-After`` for a full queue or a wait that timed out: long enough to matter."""
ECHO_LIMIT = 200
"""Characters of a client's own text (a model name) an error repeats back, at most."""


class ApiError(Exception):
    """An answer other than success, raised anywhere in a route and sent as JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.code, self.param, self.retry_after = code, param, retry_after
        self.extra = extra or {}
        """More fields of the error object (every problem of a refused rollout...)."""

    def body(self) -> dict[str, Any]:
        """The error object (what goes under ``"error"``)."""
        return {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
            **self.extra,
        }

    def response(self) -> JSONResponse:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return JSONResponse({"error": self.body()}, self.status, headers=headers)


def bounded(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def error_response(status: int, message: str, **details: Any) -> JSONResponse:
    """The answer for an error that is not raised (``details``: as ``ApiError`` takes)."""
    return ApiError(status, message, **details).response()


def invalid_request_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """The message of a 422 for a request that failed validation (FastAPI's
    ``RequestValidationError.errors()``), and the parameter it names."""
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = f"{where}: {first.get('msg', 'invalid')}" if where else "Invalid request"
    return message, where or None


def from_pool_error(error: ModelPoolError) -> ApiError:
    """The HTTP answer to a pool error a request ran into."""
    if isinstance(error, UnknownModel):
        return ApiError(
            404,
            f"The model {bounded(error.model_id)!r} does not exist; "
            "GET /v1/models lists the models",
            code="model_not_found",
            param="model",
        )
    if isinstance(error, ModelQueueFull):
        # The model is up and busy: too many requests for it, not a server fault.
        wait = error.retry_after or RETRY_SECONDS
        return ApiError(
            429, str(error), kind=RATE_LIMITED, code="model_queue_full", retry_after=wait
        )
    if isinstance(error, QueueFull):
        return _unavailable(str(error), "queue_full", RETRY_SECONDS)
    if isinstance(error, WaitTimeout):
        return _unavailable(str(error), "wait_timeout", RETRY_SECONDS)
    if isinstance(error, DoesNotFit):
        return _unavailable(str(error), "insufficient_memory", None)  # retrying cannot help
    if isinstance(error, CapacityError):
        return _unavailable(str(error), "insufficient_memory", RETRY_SECONDS)
    if isinstance(error, LoadFailed):
        # The reason holds the server's log tail and paths: it stays on the admin side.
        retry = None if isinstance(error, CircuitOpen) else (error.retry_after or RETRY_SECONDS)
        message = (
            f"The model {error.model_id!r} failed to load; "
            f"GET /admin/models/{error.model_id} has the details"
        )
        return _unavailable(message, "load_failed", retry)
    if isinstance(error, PoolClosed):
        return _unavailable("The server is shutting down", "shutting_down", None)
    return ApiError(500, "Internal error in the model pool", kind=SERVER_ERROR)


def _unavailable(message: str, code: str, retry_after: float | None) -> ApiError:
    return ApiError(503, message, kind=SERVER_ERROR, code=code, retry_after=retry_after)
