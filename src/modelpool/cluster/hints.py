"""What the router itself sent where, until the replicas' own reports catch up.

A replica's report reaches the router up to a period late (Ray polls
``record_routing_stats`` every ``request_routing_stats_period_s``, then passes it on).
A burst for a cold model arrives faster than that: without a memory of its own, the
router would see the model nowhere for every request of the burst and spread them,
starting one load per replica. So the router notes each model it routes to a replica,
and counts it as *loading* there (``Rank.LOADING``: join that load) until the
replica's report shows it READY or loading itself, or ``ttl`` seconds pass (the
report never did: the load failed, or the model was evicted again).
"""

from __future__ import annotations

import dataclasses

from modelpool.cluster.routing import ReplicaId, ReplicaStats
from modelpool.types import ModelId


class RouteHints:
    """Models routed to each replica and not yet in its report, with when."""

    def __init__(self, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        self.ttl = ttl
        self._sent: dict[ReplicaId, dict[ModelId, float]] = {}

    def routed(self, replica_id: ReplicaId, model_id: ModelId, now: float) -> None:
        """``model_id``'s request went to ``replica_id`` at ``now``."""
        self._sent.setdefault(replica_id, {})[model_id] = now

    def withdraw(self, replica_id: ReplicaId, model_id: ModelId, at: float) -> None:
        """The request routed at ``at`` went elsewhere after all (that replica was
        full): its hint goes, unless a later request renewed it."""
        sent = self._sent.get(replica_id)
        if sent is not None and sent.get(model_id) == at:
            del sent[model_id]
            if not sent:
                del self._sent[replica_id]

    def forget(self, replica_id: ReplicaId) -> None:
        """The replica is gone (its actor died): what was sent there is not coming."""
        self._sent.pop(replica_id, None)

    def pending(self, replica_id: ReplicaId) -> frozenset[ModelId]:
        """Models sent to ``replica_id`` whose hints still stand."""
        return frozenset(self._sent.get(replica_id, ()))

    def applied(self, stats: ReplicaStats, now: float) -> ReplicaStats:
        """``stats`` with the models routed there and not yet reported counted as
        loading; hints the report now covers, or that are older than ``ttl``, go."""
        sent = self._sent.get(stats.replica_id)
        if not sent:
            return stats
        reported = stats.ready | stats.loading
        for model_id, at in list(sent.items()):
            if model_id in reported or now - at > self.ttl:
                del sent[model_id]
        if not sent:
            del self._sent[stats.replica_id]
            return stats
        return dataclasses.replace(stats, loading=stats.loading | frozenset(sent))
