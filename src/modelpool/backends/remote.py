"""RemoteBackend: a model served by an OpenAI-compatible server modelpool does not start.

llama-swap calls these ``peers``: a vLLM on another box, a llama.cpp server someone
already runs here, a hosted API. Options (flattened in a model's YAML entry)::

    gpt-mini:
      backend: remote
      url: https://api.openai.com/v1      # the base URL, as an OpenAI client takes it
      api_key: ${OPENAI_API_KEY}          # from the environment; never in the file
      model: gpt-4o-mini                  # its name there (default: the id here)
      timeouts: {connect: 10s, read: 5m}  # read: the longest silence in an answer
      health: /models                     # GET under url, every health_interval
      health_interval: 10s

Nothing is started or stopped. ``load`` checks that the server passes its health check
(that is all loading means here) and hands the proxy the URL, the key (sent as
``Authorization: Bearer`` to this server only) and the timeouts (``Handle.upstream``).
``unload`` forgets it. It books no memory on the pool's devices: the config refuses
``memory``, ``device`` and the like for it, and the scheduler never evicts it for room
nor counts it toward ``max_models`` (``ModelSpec.remote``).

While it is loaded its health is checked every ``health_interval``; ``unhealthy_after``
failed checks in a row and the pool marks it FAILED with the reason (``wait_closed``,
the pool's crash watch), so requests get a clear 503 instead of waiting on a dead
server. The next request after the retry backoff checks again, and serves once the
server answers (a remote model's circuit never opens: ``core/retry.py``).

The key is read from modelpool's environment when the model loads; it is never kept in
the config, an event, a log line or an error (``UpstreamAccess`` hides it from its repr).
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from modelpool.backends.http_probe import call
from modelpool.config import ModelSpec
from modelpool.config.fields import CHECK_FILES, Seconds
from modelpool.core.ports import Handle
from modelpool.core.upstream import UpstreamAccess
from modelpool.types import Bytes, DeviceId

_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_KEY = re.compile(r"^[\x21-\x7e]+$")
"""Printable ASCII without spaces: anything else could not go in a header line."""
ANSWER_CHARS = 200
"""Characters of a failed health check's answer quoted in the reason."""


class RemoteTimeouts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connect: Annotated[Seconds, Field(gt=0)] = 10.0
    """Seconds to open a connection to the server (and for a health check to answer)."""
    read: Annotated[Seconds, Field(gt=0)] = 300.0
    """Seconds an answer may go without a byte: a stream's pause, or the wait for an
    answer that is not streamed. Past it the client gets our 504."""


class RemoteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    """The server's OpenAI base URL (``http://10.0.0.5:8000/v1``); a trailing ``/`` is
    dropped. No credentials in it (``api_key`` is for that), no query."""
    api_key: str | None = None
    """``${NAME}``: the environment variable that holds the key (the key itself never
    goes in the file). Sent as ``Authorization: Bearer <key>``, to this server only."""
    model: str | None = Field(None, min_length=1, max_length=256)
    """The model's name on that server, put in each request's ``model`` (default: the id)."""
    timeouts: RemoteTimeouts = Field(default_factory=RemoteTimeouts)
    health: str = Field("/models", pattern=r"^/[!-~]*$")
    """Path under ``url`` that a GET must answer with a 2xx while the server is healthy."""
    health_interval: Annotated[Seconds, Field(gt=0)] = 10.0
    unhealthy_after: int = Field(2, ge=1)
    """Failed health checks in a row that make the model FAILED."""

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
            raise ValueError(f"expected an http:// or https:// URL, got {shown}")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise ValueError("the URL's port is not a number from 0 to 65535") from None
        if parts.username is not None or parts.password is not None:
            # The message never repeats the URL: it holds a secret.
            raise ValueError("the URL holds credentials; give the key as api_key: ${NAME}")
        if parts.query or parts.fragment:
            raise ValueError("the URL has a query or fragment; give the base URL only")
        return url.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _from_environment(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        found = _REFERENCE.match(value)
        if found is None:
            # Never echoed: it may be the key itself.
            raise ValueError(
                "api_key must name an environment variable as ${NAME} (e.g. "
                "api_key: ${OPENAI_API_KEY}); the key itself never goes in the file"
            )
        checks = isinstance(info.context, dict) and info.context.get(CHECK_FILES)
        if checks and found[1] not in os.environ:  # the config of a server about to run
            raise ValueError(f"${{{found[1]}}} is not set in the environment")
        return value

    @property
    def key_variable(self) -> str | None:
        found = _REFERENCE.match(self.api_key) if self.api_key is not None else None
        return found[1] if found is not None else None


@dataclass(frozen=True, slots=True)
class RemoteServer:
    """``Handle.native`` of a remote model: where its health is checked, and how."""

    host: str
    port: int
    tls: bool
    base_path: str
    """The URL's path (``/v1``), which the health path goes under."""
    options: RemoteOptions
    access: UpstreamAccess

    @classmethod
    def of(cls, options: RemoteOptions, access: UpstreamAccess) -> RemoteServer:
        parts = urlsplit(options.url)
        tls = parts.scheme == "https"
        assert parts.hostname is not None  # the options check it
        port = parts.port or (443 if tls else 80)
        return cls(parts.hostname, port, tls, parts.path, options, access)

    @property
    def health_url(self) -> str:
        return f"{self.options.url}{self.options.health}"

    async def check(self) -> str | None:
        """None when the health check passes, else what went wrong (never the key)."""
        path = f"{self.base_path}{self.options.health}"
        try:
            status, body = await call(
                self.host,
                self.port,
                "GET",
                path,
                self.options.timeouts.connect,
                headers=self.access.headers,
                tls=self.tls,
            )
        except TimeoutError:
            return (
                f"GET {self.health_url} did not answer within "
                f"{self.options.timeouts.connect:g}s (timeouts.connect)"
            )
        except ConnectionRefusedError:
            return f"GET {self.health_url} was refused (nothing listens there)"
        except (OSError, ValueError) as error:
            return f"GET {self.health_url} failed: {_scrubbed(str(error), self.access)}"
        if 200 <= status < 300:
            return None
        answer = _scrubbed(body.decode("utf-8", "replace").strip(), self.access)
        hint = " (check api_key)" if status in (401, 403) else ""
        quoted = answer[:ANSWER_CHARS] or "(empty)"
        return f"GET {self.health_url} answered {status}{hint}: {quoted}"


class RemoteBackend:
    """Attaches to OpenAI-compatible servers that run on their own, and watches them."""

    options_model = RemoteOptions

    def estimate(self, spec: ModelSpec) -> Bytes | None:
        """Nothing: a remote model holds no memory here."""
        return 0

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle:
        options = RemoteOptions.model_validate(spec.options)
        server = RemoteServer.of(options, _access(spec, options))
        problem = await server.check()
        if problem is not None:
            raise RuntimeError(f"remote model {spec.id!r}: {problem}")
        return Handle(spec.id, device, endpoint=options.url, native=server, upstream=server.access)

    async def unload(self, handle: Handle) -> None:
        """Nothing to stop: the server is not ours. The health watch ends with the handle."""
        _server(handle)

    async def wait_closed(self, handle: Handle) -> str:
        """Return, saying why, once ``unhealthy_after`` health checks in a row failed."""
        server = _server(handle)
        options = server.options
        failed: list[str] = []
        while len(failed) < options.unhealthy_after:
            await asyncio.sleep(options.health_interval)
            problem = await server.check()
            failed = [] if problem is None else [*failed, problem]
        count = len(failed)
        return (
            f"remote model {handle.model_id!r} failed {count} health check"
            f"{'s' * (count != 1)} in a row: {failed[-1]}"
        )


def _access(spec: ModelSpec, options: RemoteOptions) -> UpstreamAccess:
    headers: dict[str, str] = {}
    name = options.key_variable
    if name is not None:
        key = os.environ.get(name)
        if not key:
            raise RuntimeError(
                f"remote model {spec.id!r}: api_key names ${{{name}}}, which is not set "
                "(or empty) in modelpool's environment"
            )
        if not _KEY.match(key):
            raise RuntimeError(
                f"remote model {spec.id!r}: the key in ${{{name}}} has spaces or characters "
                "that cannot go in an HTTP header"
            )
        headers["Authorization"] = f"Bearer {key}"
    timeouts = options.timeouts
    return UpstreamAccess(
        headers=headers,
        model=options.model,
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
    )


def _server(handle: Handle) -> RemoteServer:
    server = handle.native
    if not isinstance(server, RemoteServer):
        raise TypeError(f"model {handle.model_id!r} was not loaded by the remote backend")
    return server


def _scrubbed(text: str, access: UpstreamAccess) -> str:
    """``text`` with the key's value cut out, should a server echo it back."""
    for secret in access.secrets:
        text = text.replace(secret, "<api_key>")
    return text
