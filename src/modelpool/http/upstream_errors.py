"""What a model's server said when it failed: kept whole for operators, cleaned for clients.

A model's server may answer an error with a stack trace, file paths or a page of HTML.
``/v1`` clients get its error only when it is a well-formed OpenAI error object
(``{"error": {"message": str, ...}}``), reduced to the four OpenAI fields, its message
cleaned of paths and tracebacks and cut to ``MESSAGE_LIMIT``; anything else becomes our
own 502 with a generic message. The whole body goes to the server's log (WARNING,
``modelpool.http``), to the model's own log (``ModelPool.log_note``) and to
``UpstreamErrorLog``, which ``GET /admin/models/{id}`` shows.

A 401 or 403 is never passed on: the client's own key is not what the model's server
refused (modelpool never forwards it), so it gets our 502 saying the server refused
modelpool; a remote model's ``api_key`` is the usual suspect. What is kept of a remote
server's answer has its key scrubbed out (``scrubbed``), should the server echo it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from modelpool.http.errors import INVALID_REQUEST, SERVER_ERROR, ApiError, bounded

log = logging.getLogger("modelpool.http")

MESSAGE_LIMIT = 500
"""Characters of an upstream error message a client sees, at most."""
KEPT_BODY = 64 * 1024
"""Characters of an upstream error body kept for operators."""
KEPT_ERRORS = 20
"""Upstream errors kept per model for ``/admin``."""

_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.\-~@+]+){2,}[\\/]?")
"""Two or more path segments: ``/home/me/x.gguf``, ``C:\\models\\x``, ``./a/b``."""
_TRACEBACK = re.compile(r"\s*Traceback \(most recent call last\).*", re.DOTALL)
_FIELDS = ("type", "param", "code")
REFUSED_US = (401, 403)
"""Statuses that say the model's server refused modelpool itself, not the client."""
SCRUBBED = b"<api_key>"


class UpstreamErrorLog:
    """The last ``KEPT_ERRORS`` error answers of each model's server, whole."""

    def __init__(
        self, clock: Any = time.time, model_log: Callable[[str, str], None] | None = None
    ) -> None:
        """``model_log(model_id, text)`` adds the whole answer to the model's own log
        too (``ModelPool.log_note``), beside what its server printed."""
        self._clock = clock
        self._model_log = model_log
        self._kept: dict[str, deque[dict[str, Any]]] = {}

    def record(self, model_id: str, status: int, body: bytes | str) -> None:
        text = body if isinstance(body, str) else body.decode("utf-8", errors="replace")
        log.warning("the server of model %r answered %s: %s", model_id, status, text[:KEPT_BODY])
        kept = self._kept.setdefault(model_id, deque(maxlen=KEPT_ERRORS))
        kept.append({"at": self._clock(), "status": status, "body": text[:KEPT_BODY]})
        if self._model_log is not None:
            self._model_log(model_id, f"answered HTTP {status}: {text[:KEPT_BODY]}")

    def recent(self, model_id: str) -> list[dict[str, Any]]:
        """Oldest first."""
        return list(self._kept.get(model_id, ()))


def client_error(model_id: str, status: int, body: bytes) -> ApiError:
    """What a ``/v1`` client is told of an upstream error answer ``body`` (status >= 400)."""
    if status in REFUSED_US:
        return ApiError(
            502,
            f"The server of model {model_id!r} refused modelpool's credentials (HTTP {status}); "
            f"GET /admin/models/{model_id} has the details",
            kind=SERVER_ERROR,
            code="upstream_refused",
        )
    error = _openai_error(body)
    if error is None:
        return ApiError(
            502,
            f"The server of model {model_id!r} answered with an error (HTTP {status}); "
            f"GET /admin/models/{model_id} has the details",
            kind=SERVER_ERROR,
            code="upstream_error",
        )
    fields = {name: error.get(name) for name in _FIELDS}
    kind = fields["type"] if isinstance(fields["type"], str) and fields["type"] else None
    default_kind = SERVER_ERROR if status >= 500 else INVALID_REQUEST
    return ApiError(
        status,
        clean_message(error["message"]),
        kind=bounded(kind, 100) if kind else default_kind,
        code=_scalar(fields["code"]),
        param=_scalar(fields["param"]),
    )


def scrubbed(body: bytes, secrets: tuple[str, ...]) -> bytes:
    """``body`` with every one of ``secrets`` (longest first) replaced by ``<api_key>``."""
    for secret in secrets:
        body = body.replace(secret.encode(), SCRUBBED)
    return body


def clean_message(message: str) -> str:
    """``message`` without tracebacks or file paths, at most ``MESSAGE_LIMIT`` characters."""
    message = _TRACEBACK.sub("", message)
    message = _PATH.sub("<path>", message)
    return bounded(message.strip(), MESSAGE_LIMIT) or "The model's server reported an error"


def _openai_error(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    if not all(_scalar_or_none(error.get(name)) for name in _FIELDS):
        return None
    return error


def _scalar_or_none(value: object) -> bool:
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


def _scalar(value: object) -> str | None:
    return None if value is None else bounded(str(value), 100)
