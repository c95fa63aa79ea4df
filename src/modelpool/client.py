"""``ServerClient``: a small synchronous client for a running server's ``/admin`` API.

The CLI's remote commands (``status``, ``load``, ``versions``, ``rollout``...) use it;
scripts may too::

    with ServerClient("http://127.0.0.1:8080", api_key="...") as server:
        server.load("smollm2")  # waits until ready; raises ApiError if the load failed
        with server.events() as events:  # the live event stream, as dicts
            for event in events:
                print(event["kind"], event["model"])
        op = server.start_rollout("smollm2", "v2", "canary", {"initial_percentage": 10})
        print(server.rollout(op["operation_id"])["status"])

The exceptions::

    ClientError                 anything that kept a call from getting its answer
    ├── ServerUnreachable       no connection to the URL (the server may not be running)
    ├── ServerTimeout           connected, but no answer in time
    └── ApiError                the server answered with an error: .status, .message, .code,
                                .problems (every reason a rollout or version was refused)

It talks HTTP only (httpx, the ``server`` extra): it never imports the server's code.
"""

from __future__ import annotations

import json
import os
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from itertools import chain, islice
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

__all__ = [
    "DEFAULT_URL",
    "ServerClient",
    "EventStream",
    "ClientError",
    "ServerUnreachable",
    "ServerTimeout",
    "ApiError",
]

DEFAULT_URL = "http://127.0.0.1:8080"
CONNECT_TIMEOUT = 5.0
STREAM_READ_TIMEOUT = 60.0
"""The event stream sends a keep-alive comment every 15 s: a minute of silence is a dead
connection."""


class ClientError(Exception):
    """A call to the server did not get its answer."""


class ServerUnreachable(ClientError):
    """No connection to the server's URL."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot connect to {url} ({reason}); the server may not be running: "
            "start it with 'modelpool serve'"
        )
        self.url, self.reason = url, reason


class ServerTimeout(ClientError):
    """The server took the connection but did not answer in time."""


class ApiError(ClientError):
    """The server answered with an error status, in OpenAI's shape or otherwise."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        kind: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind
        self.details: dict[str, Any] = dict(details or {})
        """The whole ``error`` object the server sent, its extra fields included."""

    @property
    def problems(self) -> list[str]:
        """Every problem the server listed: a refusal's ``problems``, then invalid
        settings' ``issues`` as ``path: message``; empty when it listed none."""
        found = [str(p) for p in _listed(self.details.get("problems"))]
        for issue in _listed(self.details.get("issues")):
            if not isinstance(issue, dict):
                found.append(str(issue))
                continue
            path = issue.get("path")
            if isinstance(path, list | tuple):
                path = ".".join(str(part) for part in path)
            message = str(issue.get("message", issue))
            found.append(f"{path}: {message}" if path else message)
        return found


class _Closing(ABC):
    """What holds a connection open: ``close()`` it, or use it in ``with``."""

    @abstractmethod
    def close(self) -> None:
        """Let go of the connection."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ServerClient(_Closing):
    """The admin API of the server at ``url``; ``api_key`` is sent as a bearer token.

    ``timeout`` bounds every quick call (status, models, one model); ``load`` and
    ``unload`` wait as long as the server takes unless given their own ``timeout``.
    ``ca_cert``: a PEM file of the certificate authority that signed an ``https://``
    server's certificate (by default the system's, or ``SSL_CERT_FILE``'s).
    ``transport`` replaces the network (``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 10.0,
        *,
        ca_cert: str | os.PathLike[str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _checked_url(url)
        verify: ssl.SSLContext | bool = True
        if ca_cert is not None:
            try:
                verify = ssl.create_default_context(cafile=os.fspath(ca_cert))
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"cannot use the CA certificate {ca_cert}: {error}") from None
        self.timeout = timeout
        headers = {"accept": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            verify=verify,
            transport=transport,
        )

    # --- the admin API ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``GET /admin/status``: memory per device, strategy, queue, every model."""
        return self._json("GET", "/admin/status")

    def models(self) -> list[dict[str, Any]]:
        """``GET /admin/models``: a view of every configured model."""
        models: list[dict[str, Any]] = self._json("GET", "/admin/models")["models"]
        return models

    def model(self, model_id: str) -> dict[str, Any]:
        """``GET /admin/models/{id}``: one model's view (an alias works too)."""
        return self._json("GET", f"/admin/models/{_segment(model_id)}")

    def load(
        self, model_id: str, wait: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """Load now. ``wait=True``: returns the view once ready, ``ApiError`` (503,
        ``load_failed``) if the load failed. ``wait=False``: the view at once (202)."""
        path = f"/admin/models/{_segment(model_id)}/load"
        params = {"wait": "true" if wait else "false"}
        waiting = self._waiting(timeout) if wait else None
        return self._json("POST", path, params=params, timeout=waiting)

    def preload(
        self, model_id: str, priority: int | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Preload: ``{"preloaded": bool, "reason": str | None, "model": view}`` once it
        is resident or was skipped (it only uses room nobody needs)."""
        path = f"/admin/models/{_segment(model_id)}/preload"
        params = {} if priority is None else {"priority": str(priority)}
        return self._json("POST", path, params=params, timeout=self._waiting(timeout))

    def unload(self, model_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Unload once the model's leases are back; the view after."""
        path = f"/admin/models/{_segment(model_id)}/unload"
        return self._json("POST", path, timeout=self._waiting(timeout))

    # --- versions and rollouts -----------------------------------------------------

    def versions(self, model: str) -> dict[str, Any]:
        """``GET /admin/models/{model}/versions``: every version, the split, the rollout."""
        return self._json("GET", f"/admin/models/{_segment(model)}/versions")

    def register_version(
        self,
        model: str,
        version: str,
        settings: dict[str, Any] | None = None,
        *,
        author: str | None = None,
        notes: str | None = None,
    ) -> dict[str, Any]:
        """Add ``version`` of ``model`` (the model's settings with ``settings`` over
        them); the new version. ``ApiError`` 422 with ``.problems`` when invalid."""
        body = {"version": version, "settings": settings or {}, "author": author, "notes": notes}
        return self._json("POST", f"/admin/models/{_segment(model)}/versions", body=body)

    def unregister_version(self, model: str, version: str) -> dict[str, Any]:
        """Remove a version registered at run time; 409 with ``.problems`` if refused."""
        path = f"/admin/models/{_segment(model)}/versions/{_segment(version)}"
        return self._json("DELETE", path)

    def start_rollout(
        self,
        model: str,
        target_version: str,
        strategy: str = "immediate",
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start moving ``model``'s traffic to ``target_version``; the operation (202).
        ``ApiError`` 409 with ``.problems`` when refused (nothing moved)."""
        body = _rollout_body(model, target_version, strategy, config)
        return self._json("POST", "/admin/rollouts", body=body)

    def validate_rollout(
        self,
        model: str,
        target_version: str,
        strategy: str = "immediate",
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check a rollout without starting it: ``{"valid": bool, "errors": [...]}``."""
        body = _rollout_body(model, target_version, strategy, config)
        return self._json("POST", "/admin/rollouts/validate", body=body)

    def rollouts(self, model: str | None = None) -> list[dict[str, Any]]:
        """``GET /admin/rollouts``: operation summaries, newest first (of ``model``)."""
        params = {"model": model} if model is not None else None
        answer = self._json("GET", "/admin/rollouts", params=params)
        operations: list[dict[str, Any]] = answer["operations"]
        return operations

    def rollout(self, operation_id: str) -> dict[str, Any]:
        """``GET /admin/rollouts/{id}``: one operation with its steps and history."""
        return self._json("GET", f"/admin/rollouts/{_segment(operation_id)}")

    def abort_rollout(self, operation_id: str) -> dict[str, Any]:
        """Stop an operation (traffic back on its source); 409 if it has ended."""
        return self._json("POST", f"/admin/rollouts/{_segment(operation_id)}/abort")

    def rollback(self, model: str) -> dict[str, Any]:
        """End ``model``'s running rollout, or switch back to the version before the
        last completed one; the operation. 409 when there is nothing to roll back."""
        return self._json("POST", f"/admin/models/{_segment(model)}/rollback")

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """``GET /admin/audit``: the newest ``limit`` admin and rollout operations, newest
        first (who asked, what, and how it ended)."""
        answer = self._json("GET", "/admin/audit", params={"limit": str(limit)})
        entries: list[dict[str, Any]] = answer["entries"]
        return entries

    def reload(self, timeout: float | None = None) -> dict[str, Any]:
        """``POST /admin/reload``: the server reads its config file again and applies
        what changed; the diff (``added``, ``removed``, ``reloaded``, ``updated``,
        ``settings``, ``needs_restart``, ``problems``). Waits until the changes are
        applied (removed models drained) unless given a ``timeout``. ``ApiError`` 422
        with ``.details["issues"]`` when the file has problems (nothing changed)."""
        return self._json("POST", "/admin/reload", timeout=self._waiting(timeout))

    def strategy(self) -> dict[str, Any]:
        """``GET /admin/strategy``: the strategy in force, why, and (``strategy: auto``)
        the last evaluation's table."""
        return self._json("GET", "/admin/strategy")

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /admin/alerts``: the active health alerts."""
        alerts: list[dict[str, Any]] = self._json("GET", "/admin/alerts")["alerts"]
        return alerts

    def health(self) -> dict[str, Any]:
        """``GET /admin/health``: each model version's window of requests, and alerts."""
        return self._json("GET", "/admin/health")

    # --- events -----------------------------------------------------------------------

    def logs(self, model_id: str, lines: int = 100) -> list[str]:
        """``GET /admin/models/{id}/logs``: the last ``lines`` its server printed."""
        path = f"/admin/models/{_segment(model_id)}/logs"
        answer = self._json("GET", path, params={"lines": str(lines)})
        printed: list[str] = answer["lines"]
        return printed

    def follow_logs(self, model_id: str, lines: int = 100) -> Iterator[str]:
        """The last ``lines``, then each new line as the server prints it, until the model
        is unloaded (or the caller stops iterating)."""
        path = f"/admin/models/{_segment(model_id)}/logs"
        params = {"lines": str(lines), "follow": "true"}
        response = self._open_stream(path, params)
        try:
            event = "message"
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    if event == "end":
                        return
                    yield str(json.loads(line.removeprefix("data:").strip()))
                elif not line:
                    event = "message"
        finally:
            response.close()

    def recent_events(self, limit: int = 20) -> list[dict[str, Any]]:
        """``GET /admin/events?limit=N``: the pool's last events, oldest first."""
        answer = self._json("GET", "/admin/events", params={"limit": str(limit)})
        events: list[dict[str, Any]] = answer["events"]
        return events

    def events(self) -> EventStream:
        """Open ``GET /admin/events/stream``: the pool's events from now on, as dicts.

        Returns once the server has subscribed (its first line came), so whatever the
        caller does next shows up in the stream. Close it, or use it in ``with``.
        """
        return EventStream(self._open_stream("/admin/events/stream"), self._transport_error)

    def _open_stream(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        """A streamed GET whose answer's head has come (an error answer raises)."""
        timeout = httpx.Timeout(self.timeout, read=STREAM_READ_TIMEOUT)
        request = self._http.build_request("GET", path, params=params, timeout=timeout)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as error:
            raise self._transport_error(error) from None
        if response.status_code >= 400:
            response.read()
            response.close()
            raise _api_error(response)
        return response

    # --- plumbing -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections; the client cannot be used after."""
        self._http.close()

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> dict[str, Any]:
        """The answer's JSON object; ``body`` is sent as JSON; ``timeout`` replaces the
        client's for this call."""
        try:
            response = self._http.request(
                method, path, params=params, json=body, timeout=timeout or self._http.timeout
            )
        except httpx.TransportError as error:
            raise self._transport_error(error) from None
        if response.status_code >= 400:
            raise _api_error(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(
                response.status_code,
                f"{method} {path} did not answer with a JSON object: "
                f"is {self.url} a modelpool server?",
            )
        return body

    def _waiting(self, seconds: float | None) -> httpx.Timeout:
        """A call that waits on the pool: the quick connect, then ``seconds`` (None: no limit)."""
        return httpx.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT), read=seconds)

    def _transport_error(self, error: httpx.TransportError) -> ClientError:
        if isinstance(error, httpx.ConnectTimeout):
            return ServerUnreachable(self.url, "connection timed out")
        if isinstance(error, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(error):
            return ClientError(
                f"the certificate of {self.url} is not trusted ({_reason(error)}): give the "
                "certificate authority that signed it with SSL_CERT_FILE=PATH (or ca_cert=)"
            )
        if isinstance(error, httpx.ConnectError):
            return ServerUnreachable(self.url, _reason(error))
        if isinstance(error, httpx.TimeoutException):
            return ServerTimeout(f"{self.url} did not answer in time")
        if isinstance(error, httpx.RemoteProtocolError):
            return ClientError(f"{self.url} closed the connection: {_reason(error)}")
        return ClientError(f"{self.url}: {_reason(error)}")


class EventStream(_Closing):
    """An open event stream: iterate it for events (dicts); ``close()`` ends it."""

    def __init__(
        self,
        response: httpx.Response,
        transport_error: Callable[[httpx.TransportError], ClientError],
    ) -> None:
        self._response, self._transport_error = response, transport_error
        lines = response.iter_lines()
        try:
            # The server subscribes before it sends anything, ": connected" first.
            first = list(islice(lines, 1))
        except httpx.TransportError as error:
            response.close()
            raise transport_error(error) from None
        self._events = _server_sent_events(chain(first, lines))

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> dict[str, Any]:
        try:
            return next(self._events)
        except httpx.TransportError as error:
            self.close()
            raise self._transport_error(error) from None

    def close(self) -> None:
        """End the stream: the server drops this subscriber."""
        self._response.close()


def _checked_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"invalid server URL {url!r}: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"invalid server URL {url!r}: expected http://HOST:PORT")
    return url.rstrip("/")


def _segment(model_id: str) -> str:
    return quote(model_id, safe="")


def _rollout_body(
    model: str, target_version: str, strategy: str, config: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "model": model,
        "target_version": target_version,
        "strategy": strategy,
        "config": config or {},
    }


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.removeprefix("[Errno 111] ").lower()


def _api_error(response: httpx.Response) -> ApiError:
    """The server's ``error.message`` when it sent OpenAI's shape, else the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code, kind = error.get("code"), error.get("type")
        return ApiError(
            response.status_code,
            error["message"],
            code=code if isinstance(code, str) else None,
            kind=kind if isinstance(kind, str) else None,
            details=error,
        )
    detail = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    message = f"HTTP {response.status_code} {response.reason_phrase}"
    return ApiError(response.status_code, f"{message}: {detail}" if detail else message)


def _server_sent_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Each event's ``data`` as a dict; comments (``: keep-alive``) are skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield json.loads("\n".join(data))
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
