"""Running the server: uvicorn with a graceful, complete shutdown.

On SIGINT/SIGTERM uvicorn stops accepting connections and waits up to
``server.drain_timeout`` for in-flight requests; event streams are told to end at once
(they would otherwise hold the wait to its end). Then the application's lifespan stops
the pool, which unloads every model and ends every backend process. A second signal
skips the wait. SIGHUP reads the config file again and applies what changed
(``http/reloader.py``); with ``--watch``, so does every change of the file.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path
from types import FrameType

import uvicorn

from modelpool.config import Config
from modelpool.core.pool import ModelPool
from modelpool.errors import ModelPoolError
from modelpool.http.app import create_app, server_state
from modelpool.http.audit import AUDIT_FILE
from modelpool.http.protocol import ConnectionLimits, limited_protocol
from modelpool.http.proxy import StreamBroken
from modelpool.http.state import ServerState
from modelpool.rollout import RolloutManager

log = logging.getLogger("modelpool.http")


class InsecureBind(ModelPoolError):
    """Asked to listen beyond loopback with no API key."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_keys: list[str], insecure: bool) -> None:
    if is_loopback(host) or api_keys or insecure:
        return
    raise InsecureBind(
        f"refusing to listen on {host} with no API key: anyone who can reach it could use "
        "and unload your models. Set server.api_keys (or MODELPOOL_API_KEYS), or pass "
        "--insecure if the network is yours alone"
    )


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self._state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._state.begin_drain()
        super().handle_exit(sig, frame)
        self._state.forced = self.force_exit

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.force_exit:
            # uvicorn skips the application's shutdown on a second signal, but the pool
            # must still stop: its model servers would outlive us otherwise.
            await self.lifespan.shutdown()


def server_url(host: str, port: int, tls: bool) -> str:
    """``https://HOST:PORT`` (``http`` without TLS), an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def _broken_stream_without_trace(record: logging.LogRecord) -> bool:
    """uvicorn logs an application's exception with its trace, as a crash. A stream that a
    model's server broke off is raised on purpose (the way to abort a response), and was
    logged where it happened: one line is enough."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, StreamBroken):
        record.msg, record.args, record.exc_info = "aborted a response: %s", (error,), None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def serve(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    insecure: bool = False,
    watch: bool = False,
) -> None:
    """Run ``modelpool serve`` in the foreground until a signal stops it. SIGHUP reads
    the config file again (``/admin/reload``); ``watch``: so does any change of it."""
    settings = config.server
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    check_bind(host, settings.api_keys, insecure)
    pool = ModelPool.from_config(config)  # config problems surface here, before binding
    rollouts = RolloutManager.from_config(pool, config)
    audit_path = Path(config.pool.state_dir).expanduser() / AUDIT_FILE
    app = create_app(
        pool,
        settings,
        loopback=is_loopback(host),
        rollouts=rollouts,
        alerts=config.alerts,
        audit_path=audit_path,
        config=config,
        watch=watch,
        sighup=True,
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tls = settings.tls
    url = server_url(host, port, tls is not None)
    log.info("serving on %s, operations recorded in %s", url, audit_path)
    logging.getLogger("uvicorn.error").addFilter(_broken_stream_without_trace)
    limits = ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections,
    )
    server = _DrainingServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=limited_protocol(limits),
            timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=int(settings.drain_timeout) or None,
            access_log=settings.access_log,
            log_level="info",
            server_header=False,
            # The TLS layer sits under the protocol class: it sees the decrypted bytes,
            # and its timers start once the handshake is done (asyncio bounds that).
            ssl_certfile=tls.cert_path if tls is not None else None,
            ssl_keyfile=tls.key_path if tls is not None else None,
        ),
        server_state(app),
    )
    server.run()
