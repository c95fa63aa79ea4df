"""What every route of one server shares: the pool, the upstream client, metrics."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelpool.config import ServerSettings
from modelpool.core.pool import ModelPool
from modelpool.http.upstream_errors import UpstreamErrorLog

if TYPE_CHECKING:
    from modelpool.http.audit import AuditLog
    from modelpool.http.metrics import ServerMetrics
    from modelpool.http.proxy import Upstream
    from modelpool.http.reloader import Reloader
    from modelpool.rollout import RolloutManager
    from modelpool.sim.auto import AutoStrategy


@dataclass(eq=False)
class ServerState:
    pool: ModelPool
    settings: ServerSettings
    http: Upstream
    metrics: ServerMetrics | None = None
    rollouts: RolloutManager | None = None
    auto: AutoStrategy | None = None
    """The ``strategy: auto`` evaluations (None: the config fixes the strategy)."""
    started_at: float = field(default_factory=time.time)
    ready: bool = False
    """True from the pool's start until shutdown begins (``/readyz``)."""
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when shutdown begins: event streams end so connections can close."""
    forced: bool = False
    """A second signal: stop now, without waiting for leases."""
    loop: asyncio.AbstractEventLoop | None = None
    """The loop the server runs on, once it has started."""
    upstream_errors: UpstreamErrorLog = field(default_factory=UpstreamErrorLog)
    """Model servers' error answers, whole, for ``/admin`` (clients see them cleaned)."""
    audit: AuditLog | None = None
    """Where admin and rollout operations are recorded (None: nowhere)."""
    reloader: Reloader | None = None
    """Reads the config file again (``/admin/reload``, SIGHUP, ``--watch``); None: no file."""

    def begin_drain(self) -> None:
        """Shutdown has begun: not ready any more, and event streams end. Safe to call
        from a signal handler (it hands over to the loop)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self.ready = False
        self.draining.set()
