"""``PoolReplica``: what each Ray Serve replica of the pool deployment runs.

One ``ModelPool`` per replica, built from the same config as ``modelpool serve``
(``ConfigText``: the file's text travels with the deployment, so every node reads the
same), over the resources Ray gave the replica (``cluster`` section: its GPUs show in
``CUDA_VISIBLE_DEVICES``). The replica runs the server's own application around it
(``create_app``), without a socket: ``http`` plays one request through it and streams
the answer back (``asgi.call``), so that the routes, the proxy to model servers, the
error shapes and the limits are those of ``modelpool serve``.

``record_routing_stats`` is Ray's hook for the request router: the replica's
``ReplicaStats`` and each model's ``ModelAsk`` (``cluster/reports.py``), and a summary
for ``/admin/status`` on the ingress.

Each replica keeps its state (pid files of its model servers, measured footprints) in
a folder of its own under the config's ``state_dir`` (``ray/<replica>``): replicas on
one node must not reap each other's servers as orphans. Its pool stops when the
replica does (Ray calls ``__del__`` on a graceful shutdown), ending every model server
it started; the servers of a replica Ray killed are stopped by the next replica to
start on that node (``orphans.py``).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpool.bootstrap import default_config
from modelpool.cluster.reports import routing_report
from modelpool.config import Config
from modelpool.core.pool import ModelPool
from modelpool.http.app import create_app
from modelpool.plugins import PLUGINS
from modelpool.ray.asgi import HttpCall, HttpHead, Lifespan, call
from modelpool.ray.orphans import claim, reap_dead_siblings
from modelpool.rollout import RolloutManager

log = logging.getLogger("modelpool.ray")

SUMMARY_KEY = "summary"
"""The key of the routing report that ``/admin/status`` on the ingress shows."""


@dataclass(frozen=True, slots=True)
class ConfigText:
    """A config as it travels to every replica: the file's text and its name (None
    for both: the embedded default)."""

    text: str | None = None
    source: str | None = None

    @classmethod
    def of_file(cls, path: str | os.PathLike[str] | None) -> ConfigText:
        if path is None:
            return cls()
        return cls(Path(path).read_text(encoding="utf-8"), os.fspath(path))

    def load(self) -> Config:
        """The config, checked as ``modelpool serve`` checks it (``MODELPOOL_*`` from
        the replica's environment apply)."""
        if self.text is None:
            return default_config()
        source = self.source or "<ray>"
        return Config.from_yaml(self.text, source, os.environ, check_files=True, plugins=PLUGINS)


class PoolReplica:
    """One pool on one Ray Serve replica. Ray makes it (``deployment.py`` wraps it)."""

    async def __init__(self, config: ConfigText, replica_id: str) -> None:  # type: ignore[misc]
        self.replica_id = replica_id
        self.node = socket.gethostname()
        loaded = config.load()
        state_dir = replica_state_dir(loaded, replica_id)
        claim(state_dir)
        await reap_dead_siblings(state_dir)  # what a killed replica here left running
        self.pool = ModelPool.from_config(loaded, state_dir=state_dir)
        rollouts = RolloutManager.from_config(self.pool, loaded)
        # No Host check (Ray's proxy is the listener); keys and limits as configured.
        self.app = create_app(
            self.pool, loaded.server, loopback=False, rollouts=rollouts, alerts=loaded.alerts
        )
        self.lifespan = Lifespan(self.app)
        await self.lifespan.startup()
        log.info("pool replica %s started on %s", replica_id, self.node)

    async def http(self, request: HttpCall) -> AsyncIterator[HttpHead | bytes]:
        """Serve ``request`` as ``modelpool serve`` would: the head, then the body."""
        async for part in call(self.app, request):
            yield part

    async def status(self) -> dict[str, Any]:
        """The pool's status (``/admin/status``'s), with where this replica runs."""
        return {"replica": self.replica_id, "node": self.node, **self.pool.get_resource_status()}

    async def record_routing_stats(self) -> dict[str, Any]:
        """Ray's hook: what the request router ranks this replica by."""
        status = self.pool.get_resource_status()
        report = routing_report(self.replica_id, status, self.pool.specs)
        report[SUMMARY_KEY] = summary(self.replica_id, self.node, status)
        return report

    async def stop(self) -> None:
        """Stop the pool: every model unloaded, every model server ended."""
        await self.lifespan.shutdown()


def replica_state_dir(config: Config, replica_id: str) -> Path:
    """Where one replica keeps its state: a folder of its own under ``state_dir``."""
    return Path(config.pool.state_dir).expanduser() / "ray" / replica_id


def summary(replica_id: str, node: str, status: dict[str, Any]) -> dict[str, Any]:
    """One replica in the ingress's ``/admin/status``: where it runs, its devices'
    memory, its models and their states, its queue."""
    return {
        "replica": replica_id,
        "node": node,
        "loaded_models": status["loaded_models"],
        "models": {
            model_id: {
                "status": view["status"],
                "load_count": view.get("load_count", 0),
                "requests": view.get("requests", 0),
            }
            for model_id, view in status["model_resources"].items()
        },
        "memory": {
            device: {k: info[k] for k in ("budget", "free", "committed", "reserved")}
            | {"models": dict(info["models"])}
            for device, info in status["memory_info"].items()
        },
        "queue": status["queue"],
    }
