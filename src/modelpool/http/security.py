"""The server's gate: allowed ``Host``, API keys and body size, checked before any route.

A plain ASGI middleware (no per-request objects) so that it adds microseconds, and so
that streamed responses pass through it untouched. Keys are compared with
``hmac.compare_digest`` against every configured key, so the time taken does not say
how much of a guess was right; a 401 says only that the key is missing or wrong.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelpool.http.errors import AUTHENTICATION, ApiError

OPEN_PATHS = frozenset({"/healthz", "/ui", "/ui/", "/favicon.ico"})
"""Routes that never need a key: liveness, and the dashboard page (it holds no data)."""
ADMIN_PREFIXES = ("/admin", "/metrics")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


class Guard:
    """Refuses a request whose ``Host``, key or body size is not allowed."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: Iterable[str],
        admin_keys: Iterable[str],
        allowed_hosts: Iterable[str] | None,
        max_body: int,
    ) -> None:
        """``allowed_hosts=None`` accepts any ``Host`` (a server bound beyond loopback)."""
        self.app = app
        self.api_keys = [key.encode() for key in api_keys]
        self.admin_keys = [key.encode() for key in admin_keys]
        self.hosts = None if allowed_hosts is None else LOOPBACK_HOSTS | set(allowed_hosts)
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = self._refusal(scope["path"], headers)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _too_large(self.max_body).response()(scope, receive, send)
            return
        await self.app(scope, _limited(receive, self.max_body), send)

    def _refusal(self, path: str, headers: dict[bytes, bytes]) -> ApiError | None:
        if self.hosts is not None and _host_name(headers.get(b"host", b"")) not in self.hosts:
            # A page on another site that rebinds its name to 127.0.0.1 lands here.
            return ApiError(421, "Host not allowed", code="host_not_allowed")
        if path in OPEN_PATHS:
            return None
        admin = path.startswith(ADMIN_PREFIXES)
        keys = self.admin_keys if admin and self.admin_keys else self.api_keys
        if not keys:
            return None
        given = _presented_key(headers)
        if given is None:
            return _unauthorized("No API key given: send 'Authorization: Bearer <key>'")
        # Every key is compared, whatever matched: no early exit to time.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(given, key)
        return None if matched else _unauthorized("Incorrect API key")


def _presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and credentials.strip():
            return credentials.strip()
    return headers.get(b"x-api-key") or None


def _host_name(host: bytes) -> str:
    """``Host`` without its port: ``localhost:8080`` → ``localhost``, ``[::1]:80`` → ``[::1]``."""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[: text.find("]") + 1]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, kind=AUTHENTICATION, code="invalid_api_key")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request body larger than {limit} bytes", code="request_too_large")


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops a body without ``Content-Length`` once it passes ``limit``."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)  # the app's ApiError handler answers 413
        return message

    return receive_limited
