"""``ModelPoolRouter``: Ray Serve's ``RequestRouter`` ranking pool replicas our way.

Ray calls ``choose_replicas`` for each request with the deployment's replicas; each
replica's last ``record_routing_stats`` report is on it (``RunningReplica.routing_stats``,
``cluster/reports.py``'s shape). The request's model is its multiplexed model id (the
ingress sets it). The ranking itself is ``cluster.routing.MemoryAwareRouter``'s, a pure
decision: READY there, loading there, fits there, cheapest eviction there; within a
rank the fewer requests (Ray's own queue-length cache, when fresher than the report).
A hot model spreads: where it is saturated (at its ``max_concurrent``, or the replica
at its ``max_ongoing_requests``) ranks after a replica where a copy fits.

Reports come a period late, so the router also remembers where it sent each model
(``cluster.hints.RouteHints``): the rest of a burst for a cold model joins the load the
first request started instead of starting one on every replica.

Requests without a model (``/v1/models``, status) go to any replica: Ray picks the
shortest queue among them. A request whose multiplexed id is ``target(replica)`` (the
ingress's per-replica ``/admin`` routes) goes to that replica only.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from modelpool.cluster.hints import RouteHints
from modelpool.cluster.reports import ASKS_KEY, STATS_KEY
from modelpool.cluster.routing import MemoryAwareRouter, ModelAsk, ReplicaStats
from modelpool.ray.registry import register

FIRST_CHOICES_KEPT = 4096
"""Requests being routed whose first choice is kept before old ones are dropped."""
TARGET_PREFIX = "replica:"
"""A multiplexed id with this prefix names a replica, not a model (a model id cannot
hold ':')."""


def target(replica_id: str) -> str:
    """The multiplexed id that sends a request to ``replica_id`` only."""
    return f"{TARGET_PREFIX}{replica_id}"


def targeted(multiplexed_id: str) -> str | None:
    """The replica ``multiplexed_id`` names (``target``), else None."""
    if multiplexed_id.startswith(TARGET_PREFIX):
        return multiplexed_id[len(TARGET_PREFIX) :]
    return None


class ModelPoolRouter(RequestRouter):
    """Ranks the pool's replicas for a request by ``MemoryAwareRouter``."""

    def initialize_state(
        self, hint_seconds: float = 10.0, seed: int | None = None, **_: Any
    ) -> None:
        """Ray's hook, with ``RequestRouterConfig.request_router_kwargs``."""
        self.hints = RouteHints(hint_seconds)
        self.rng = random.Random(seed)
        self.policy = MemoryAwareRouter()
        self.first_choice: dict[str, tuple[str, float]] = {}
        """Per request (internal id) being routed: the replica ranked first, and when."""
        register(self)  # the ingress reads its reports for ``/admin/status``

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        model_id = _model_of(pending_request)
        if not model_id or not candidate_replicas:
            return [candidate_replicas]
        wanted = targeted(model_id)
        if wanted is not None:  # none while that replica is gone: the ingress times out
            return [[r for r in candidate_replicas if r.replica_id.unique_id == wanted]]
        ranking = self.rank(model_id, candidate_replicas)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        if ranking and pending_request is not None:
            # Noted now, not once routed: requests of a burst are ranked while Ray
            # probes the first one's replica, and must see it on its way there.
            now = time.monotonic()
            self.hints.routed(ranking[0], model_id, now)
            request_id = pending_request.metadata.internal_request_id
            self.first_choice[request_id] = (ranking[0], now)
            if len(self.first_choice) > FIRST_CHOICES_KEPT:  # requests cancelled unrouted
                ttl = self.hints.ttl
                kept = {k: v for k, v in self.first_choice.items() if now - v[1] <= ttl}
                self.first_choice = kept
        return [[by_id[replica_id]] for replica_id in ranking]

    def rank(self, model_id: str, replicas: list[RunningReplica]) -> list[str]:
        """The replicas' unique ids, best first for ``model_id``."""
        now = time.monotonic()
        stats = [self.hints.applied(self._stats_of(r), now) for r in replicas]
        return self.policy.rank(_ask(model_id, replicas), stats, self.rng)

    def _stats_of(self, replica: RunningReplica) -> ReplicaStats:
        """The replica's last report, with its ``max_ongoing_requests`` as its capacity
        (a replica at it saturates every model there: a hot model spreads) and Ray's
        own queue length when that is the fresher count."""
        replica_id = replica.replica_id.unique_id
        reported = replica.routing_stats.get(STATS_KEY)
        stats = reported if isinstance(reported, ReplicaStats) else ReplicaStats(replica_id)
        stats = dataclasses.replace(stats, capacity=replica.max_ongoing_requests)
        cached = self.replica_queue_len_cache.get(replica.replica_id)
        if cached is not None and cached > stats.load:  # Ray's count is fresher
            return dataclasses.replace(stats, in_flight=cached - stats.queued)
        return stats

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any
    ) -> None:
        model_id = _model_of(pending_request)
        if not model_id or targeted(model_id) is not None:
            return
        chosen = self.first_choice.pop(pending_request.metadata.internal_request_id, None)
        if chosen is not None and chosen[0] != replica_id.unique_id:
            self.hints.withdraw(chosen[0], model_id, chosen[1])  # the first was full
        self.hints.routed(replica_id.unique_id, model_id, time.monotonic())

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        self.hints.forget(replica_id.unique_id)
        super().on_replica_actor_died(replica_id)

    def reports(self) -> list[dict[str, Any]]:
        """Each replica's last routing report (``record_routing_stats``)."""
        return [dict(r.routing_stats) for r in self.curr_replicas.values()]


def _model_of(pending_request: PendingRequest | None) -> str:
    if pending_request is None:
        return ""
    return str(pending_request.metadata.multiplexed_model_id or "")


def _ask(model_id: str, replicas: list[RunningReplica]) -> ModelAsk:
    """The model's size as the replicas report it (the largest; 0 when none knows it:
    every replica then fits it, and the one chosen answers that it does not exist)."""
    asks = [
        ask
        for r in replicas
        if isinstance(ask := r.routing_stats.get(ASKS_KEY, {}).get(model_id), ModelAsk)
    ]
    if not asks:
        return ModelAsk(model_id, 0)
    return max(asks, key=lambda a: (a.bytes, a.devices))
