"""The server's gate: ``Host``, ``Origin``, API keys, body type and size, before any route.

A plain ASGI middleware (no per-request objects) so that it adds microseconds, and so
that streamed responses pass through it untouched. Keys are compared with
``hmac.compare_digest`` against every configured key, so the time taken does not say
how much of a guess was right; a 401 says only that the key is missing or wrong.

Against other web sites (cross-site request forgery, DNS rebinding), in this order:
every ``Host`` header must be allowed (on loopback), a browser's ``Origin`` must be the
server's own or one of ``allowed_origins`` (403), and a request that changes something
must carry its body as ``application/json`` (415): a page can send ``text/plain`` or a
form to any address without asking, but not JSON.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelpool.http.errors import AUTHENTICATION, ApiError, bounded

OPEN_PATHS = frozenset({"/healthz", "/ui", "/ui/", "/favicon.ico"})
"""Routes that never need a key: liveness, and the dashboard page (it holds no data)."""
ADMIN_PREFIXES = ("/admin", "/metrics", "/models", "/switch", "/health/models", "/alerts")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods that may change state: their bodies must be JSON, never a form a page can post."""
JSON_TYPE = b"application/json"


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
        allowed_origins: Iterable[str] = (),
    ) -> None:
        """``allowed_hosts=None`` accepts any ``Host`` (a server bound beyond loopback).
        ``allowed_origins``: web origins (``https://app.example``) besides the server's
        own whose pages may call it."""
        self.app = app
        self.api_keys = [key.encode() for key in api_keys]
        self.admin_keys = [key.encode() for key in admin_keys]
        self.hosts = None if allowed_hosts is None else LOOPBACK_HOSTS | set(allowed_hosts)
        self.origins = frozenset(_origin(o.encode()) for o in allowed_origins)
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = self._refusal(scope, headers) or self._body_refusal(scope["method"], headers)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        await self.app(scope, _limited(receive, self.max_body), send)

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> ApiError | None:
        # Judged by every Host header, not the last: a proxy may read the first.
        hosts = [value for name, value in scope["headers"] if name == b"host"] or [b""]
        if self.hosts is not None and not all(_host_name(h) in self.hosts for h in hosts):
            # A page on another site that rebinds its name to 127.0.0.1 lands here.
            return ApiError(421, "Host not allowed", code="host_not_allowed")
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin, hosts):
            return ApiError(
                403,
                f"Requests from the web page at {bounded(origin.decode('latin-1'), 100)!r} "
                "are not allowed: add its origin to server.allowed_origins",
                code="origin_not_allowed",
            )
        path = scope["path"]
        if path in OPEN_PATHS:
            return None
        admin = path.startswith(ADMIN_PREFIXES)
        keys = self.admin_keys if admin and self.admin_keys else self.api_keys
        if not keys:
            return None
        given = presented_key(headers)
        if given is None:
            return _unauthorized("No API key given: send 'Authorization: Bearer <key>'")
        # Every key is compared, whatever matched: no early exit to time.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(given, key)
        return None if matched else _unauthorized("Incorrect API key")

    def _origin_allowed(self, origin: bytes, hosts: list[bytes]) -> bool:
        """The server's own pages (``Origin`` naming the ``Host`` asked for, as the
        dashboard's do), or a listed origin. ``null`` (a sandboxed or local file page) is
        never the server's own."""
        given = _origin(origin)
        if given in self.origins:
            return True
        _, _, authority = given.partition("://")
        return len(hosts) == 1 and authority == hosts[0].decode("latin-1").strip().lower()

    def _body_refusal(self, method: str, headers: dict[bytes, bytes]) -> ApiError | None:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return _too_large(self.max_body)
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding != b"identity":
            # Inflating a compressed body could turn kilobytes into gigabytes past
            # max_body (a zip bomb); no OpenAI client compresses what it sends.
            shown = bounded(encoding.decode("latin-1"), 100)
            return ApiError(
                415,
                f"Compressed request bodies are not accepted (got {shown})",
                code="unsupported_media_type",
            )
        if method not in CHANGING_METHODS:
            return None
        kind = headers.get(b"content-type")
        has_body = b"transfer-encoding" in headers or (length not in (None, b"0"))
        if kind is None and not has_body:
            return None  # ``curl -X POST .../load``: nothing to parse, nothing forged
        media = (kind or b"").split(b";", 1)[0].strip().lower()
        if media == JSON_TYPE:
            return None
        shown = bounded(media.decode("latin-1"), 100) if kind is not None else "none"
        return ApiError(
            415,
            f"Send the body as 'Content-Type: application/json' (got {shown})",
            code="unsupported_media_type",
        )


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The API key a request carries (``Authorization: Bearer`` or ``X-API-Key``), if any."""
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and credentials.strip():
            return credentials.strip()
    return headers.get(b"x-api-key") or None


def _origin(origin: bytes) -> str:
    """``Origin`` as compared: lower case, no trailing slash."""
    return origin.decode("latin-1").strip().lower().rstrip("/")


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
