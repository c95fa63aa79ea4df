"""The ``alerts`` section: where health alerts are sent beyond the process.

.. code-block:: yaml

    alerts:
      webhooks:
        - url: ${SLACK_WEBHOOK_URL}          # Slack's incoming webhooks keep the secret here
          levels: [critical]
        - url: https://alerts.example/hook
          headers: {Authorization: "Bearer ${ALERTS_TOKEN}"}

``${NAME}`` in a URL or a header value is replaced by the environment variable
``NAME`` when the config is read, so secrets stay out of the file; a variable that is
not set is a config problem. The environment is the one the config is read with
(``Config.load``: ``os.environ``; ``from_yaml``/``from_mapping``: their ``environ``,
none unless given), or ``os.environ`` when a model is built directly.

URLs and header values are ``SecretStr``: they never show in a repr, a dump or a log.
Only ``host`` (the URL's host and port) names a webhook in logs and metrics.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from modelpool.config.fields import Seconds

__all__ = ["ENVIRON", "AlertLevel", "WebhookSettings", "AlertSettings"]

ENVIRON = "modelpool.config.environ"
"""Validation context key: the environment that ``${NAME}`` references are read from."""

AlertLevel = Literal["warning", "critical"]
"""The levels an alert is raised at (``monitor.health.Level`` but ``ok``)."""

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _environ(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context
    if isinstance(context, dict) and isinstance(context.get(ENVIRON), Mapping):
        return context[ENVIRON]  # type: ignore[no-any-return]
    return os.environ


def _substituted(text: str, environ: Mapping[str, str], where: str) -> str:
    """``text`` with each ``${NAME}`` replaced; a ValueError names the unset ones."""
    missing = [name for name in _REFERENCE.findall(text) if name not in environ]
    if missing:
        names = ", ".join(f"${{{name}}}" for name in dict.fromkeys(missing))
        raise ValueError(f"{where}: {names} is not set in the environment")
    return _REFERENCE.sub(lambda match: environ[match[1]], text)


class WebhookSettings(BaseModel):
    """One receiver: each alert at one of ``levels`` is POSTed to ``url`` as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: SecretStr
    """``http://`` or ``https://`` with a host; may hold ``${NAME}`` references."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Sent with every POST (``Authorization``); values may hold ``${NAME}`` references."""
    levels: tuple[AlertLevel, ...] = ("warning", "critical")
    """Alerts at these levels are sent, raised and resolved alike."""
    timeout: Annotated[Seconds, Field(gt=0)] = 5.0
    """How long one attempt may take, from connecting to the answer's last byte."""
    attempts: int = Field(default=4, ge=1, le=20)
    """Tries per alert before it is given up (counted ``failed``)."""
    backoff: Annotated[Seconds, Field(ge=0)] = 1.0
    """Wait before the first retry; each further retry waits twice as long..."""
    max_backoff: Annotated[Seconds, Field(ge=0)] = 60.0
    """...up to this."""
    queue: int = Field(default=100, ge=1)
    """Alerts waiting to be sent; when full, the oldest is dropped (counted ``dropped``)."""

    @field_validator("url", mode="before")
    @classmethod
    def _http_url(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value  # SecretStr's own check says what is wrong
        url = _substituted(value, _environ(info), "url")
        # The message never repeats the URL: it may be a secret from the environment.
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
            raise ValueError(f"expected an http:// or https:// URL, got {shown}")
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise ValueError("the URL's port is not a number from 0 to 65535") from None
        if not parts.hostname:
            raise ValueError("the URL has no host")
        return url

    @field_validator("headers", mode="before")
    @classmethod
    def _headers_from_environ(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, Mapping):
            return value
        environ = _environ(info)
        return {
            key: _substituted(text, environ, f"header {key!r}") if isinstance(text, str) else text
            for key, text in value.items()
        }

    @property
    def host(self) -> str:
        """The URL's host, with its port when one is given: what logs and metrics show."""
        parts = urlsplit(self.url.get_secret_value())
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address
        return host if parts.port is None else f"{host}:{parts.port}"


class AlertSettings(BaseModel):
    """Where health alerts go beyond the process (besides ``/admin/alerts`` and events)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhooks: list[WebhookSettings] = Field(default_factory=list)
