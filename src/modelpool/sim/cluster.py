"""Replays a workload on a cluster: N nodes, each the pool's own ``Scheduler`` over its
GPUs (``sim/cluster_node.py``), and a router in front (``cluster/routing.py``).

One virtual clock and one event queue for the whole cluster: a request arrives, the
router ranks the nodes from their reports (``ReplicaStats``, current at that instant:
a real router's reports are up to a period old, which this does not model), and the
chosen node's scheduler takes it as the pool would. What differs between setups:

* ``modelpool``: our router, and our memory-aware pool on every node (``hybrid``).
* ``ray_default``: Ray Serve's default router with multiplexing, and on every node
  what ``@serve.multiplexed(max_num_models_per_replica=N)`` does
  (``sim/ray_node.py``): at most N models, least recently used out first, one load at
  a time; kinder to Ray than Ray is about memory (see there).
* ``NO_SPREAD``: ours, but a hot model stays on the nodes where it is READY however
  busy (``MemoryAwareRouter(spread=False)``): what spreading buys.
* ``random``: a uniform draw, with our pool on every node.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from modelpool.cluster.routing import (
    MemoryAwareRouter,
    ModelAsk,
    RandomRouter,
    RayDefaultRouter,
    ReplicaStats,
    Router,
)
from modelpool.config import PoolSettings
from modelpool.core.stats import percentile
from modelpool.core.testing import ManualClock
from modelpool.plugins import POLICIES
from modelpool.sim.cluster_node import SimNode
from modelpool.sim.models import ModelSet
from modelpool.sim.ray_node import RayMultiplexNode
from modelpool.sim.results import RunResult, wait_figures
from modelpool.sim.workload import Workload


class ClusterNode(Protocol):
    """A node as the cluster sees it: it takes requests and reports to the router."""

    node_id: str
    counts: dict[str, int]
    bytes_moved: int
    load_seconds: float

    def arrive(self, model_id: str, arrived: float, service: float) -> None: ...

    def stats(self) -> ReplicaStats: ...


@dataclass(frozen=True, slots=True)
class ClusterSetup:
    """A router and the pool every node runs behind it."""

    name: str
    router: Router
    strategy: str = "hybrid"
    ray_max_models: int | None = None
    """Set: every node is Ray's multiplexing with this ``max_num_models_per_replica``
    (``sim/ray_node.py``); None: every node is our pool."""


NO_SPREAD = ClusterSetup("modelpool_nospread", MemoryAwareRouter(spread=False))
"""Ours with a hot model kept where it is READY however busy: what spreading buys."""


def setups(ray_max_models: int, ray_safe_max_models: int | None = None) -> dict[str, ClusterSetup]:
    """The setups compared (module docstring); ``ray_max_models`` is Ray's
    ``max_num_models_per_replica`` (one replica per node); ``ray_safe_max_models``
    adds ``ray_default_safe``, Ray with a cap that can never run out of memory."""
    out = {
        "modelpool": ClusterSetup("modelpool", MemoryAwareRouter()),
        "ray_default": ClusterSetup("ray_default", RayDefaultRouter(), "lru", ray_max_models),
        "random": ClusterSetup("random", RandomRouter()),
    }
    if ray_safe_max_models is not None:
        out["ray_default_safe"] = ClusterSetup(
            "ray_default_safe", RayDefaultRouter(), "lru", ray_safe_max_models
        )
    return out


def ray_models_per_node(models: ModelSet) -> int:
    """The ``max_num_models_per_replica`` a Ray user would set for the usual case: a
    node's memory over the mean model size (it can hold more than fits: see
    ``ray_node``'s ``over_memory``)."""
    mean = sum(m.bytes for m in models.models) / len(models.models)
    return max(1, int(sum(models.budgets.values()) // mean))


def ray_safe_models_per_node(models: ModelSet) -> int:
    """The cap that never holds more than fits: a node's memory over the largest model
    (it evicts models that would have fitted)."""
    largest = max(m.bytes for m in models.models)
    return max(1, int(sum(models.budgets.values()) // largest))


class ClusterSimulation:
    """One replay of ``workload`` on ``nodes`` nodes with one ``setup``."""

    def __init__(
        self,
        workload: Workload,
        models: ModelSet,
        setup: ClusterSetup,
        *,
        nodes: int,
        seed: int = 0,
        slo: float = 5.0,
        settings: PoolSettings | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, not {nodes}")
        models.check_serves(workload)
        self.workload = workload
        self.models = models
        self.setup = setup
        self.slo = slo
        self.clock = ManualClock(0.0)
        self._rng = random.Random(seed)
        node_settings = (settings or PoolSettings()).changed(
            budgets=dict(models.budgets), warm_budget=0
        )
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._waits: list[float] = []
        self.waits_by_model: dict[str, list[float]] = {}
        """Each model's requests' waits, in the order served."""
        self.nodes: list[ClusterNode] = []
        for i in range(nodes):
            node: ClusterNode
            if setup.ray_max_models is not None:
                node = RayMultiplexNode(
                    f"node{i}", models, setup.ray_max_models, self.clock, self._at,
                    self._served, changed=self._changed,
                )  # fmt: skip
            else:
                node = SimNode(
                    f"node{i}", models, POLICIES.get(setup.strategy)(), node_settings,
                    self.clock, self._at, self._served, changed=self._changed,
                )  # fmt: skip
            self.nodes.append(node)
        self._by_id = {node.node_id: node for node in self.nodes}
        self._index = {node.node_id: i for i, node in enumerate(self.nodes)}
        self._reports = [node.stats() for node in self.nodes]
        self._stale: list[ClusterNode] = []
        """Nodes whose report in ``_reports`` is out of date."""
        self._asks = {m.id: ModelAsk(m.id, m.bytes, m.devices or 1) for m in models.models}

    def _served(self, model_id: str, wait: float) -> None:
        self._waits.append(wait)
        self.waits_by_model.setdefault(model_id, []).append(wait)

    def p95_wait_of(self, model_ids: Iterable[str]) -> float:
        """The 95th percentile wait of the requests served for ``model_ids``."""
        waits = sorted(w for m in model_ids for w in self.waits_by_model.get(m, ()))
        return percentile(waits, 95)

    def _changed(self, node: ClusterNode) -> None:
        self._stale.append(node)

    def _reports_now(self) -> list[ReplicaStats]:
        reports, index = self._reports, self._index
        for node in self._stale:
            reports[index[node.node_id]] = node.stats()
        self._stale.clear()
        return reports

    def _at(self, delay: float, handler: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._events, (self.clock.now + delay, next(self._order), handler, args))

    def run(self) -> RunResult:
        started = time.perf_counter()
        events = self._events
        clock = self.clock
        route = self.setup.router.choose
        by_id, asks, rng, models = self._by_id, self._asks, self._rng, self.models
        for request in self.workload.requests:
            arrival = request.time
            while events and events[0][0] <= arrival:  # what finishes first is seen first
                when, _, handler, args = heapq.heappop(events)
                clock.now = when
                handler(*args)
            clock.now = arrival
            service = request.service
            if service is None:
                service = models[request.model].service_seconds(
                    request.prompt_tokens, request.output_tokens
                )
            chosen = route(asks[request.model], self._reports_now(), rng)
            assert chosen is not None
            by_id[chosen].arrive(request.model, arrival, service)
        while events:
            when, _, handler, args = heapq.heappop(events)
            clock.now = when
            handler(*args)
        return self._result(time.perf_counter() - started)

    @property
    def over_memory(self) -> int:
        """Loads where Ray's count cap alone would have held more than the node's
        memory (``ray_node``); 0 for our pool, whose books never do."""
        return sum(node.counts.get("over_memory", 0) for node in self.nodes)

    def _result(self, wall: float) -> RunResult:
        waits = sorted(self._waits)
        total = dict.fromkeys(self.nodes[0].counts, 0)
        for node in self.nodes:
            for key, value in node.counts.items():
                total[key] += value
        return RunResult(
            label=self.setup.name,
            requests=len(self.workload.requests),
            rejected=total["rejected"],
            hits=total["hits"],
            cold_loads=total["cold_loads"],
            warm_restores=total["restores"],
            offloads=total["offloads"],
            unloads=total["unloads"],
            **wait_figures(waits, self.slo),
            bytes_moved=sum(n.bytes_moved for n in self.nodes),
            load_seconds=sum(n.load_seconds for n in self.nodes),
            simulated_seconds=self.clock.now,
            wall_seconds=wall,
        )
