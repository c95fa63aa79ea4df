"""One node as Ray Serve's model multiplexing runs it, on the cluster's virtual clock.

What ``@serve.multiplexed(max_num_models_per_replica=N)`` does on a replica (Ray 2.x,
``serve/multiplex.py``), one replica per node:

* the models loaded form one LRU list of at most N; a request for a loaded model
  moves it to the recent end and is served at once;
* a request for another model waits for the replica's one loading lock: loads run one
  at a time (ray#65346), each first evicting the least recently used models until the
  new one is within the count, whether or not they are serving (Ray does not look);
* requests for a model already waiting for the lock wait for that same load (the
  wrapper looks in its cache again once it holds the lock);
* the router learns of a model only once it is loaded (``ready`` in the report).

Ray knows nothing of memory; a node that held more than its GPUs have would fail with
out-of-memory errors. Kinder than Ray: here the LRU also evicts until the new model
fits the node's total memory (its GPUs taken as one pool, so no fragmentation either),
as if placement within the node were perfect; each load that needed it is counted
(``counts["over_memory"]``: where Ray would have run out of memory).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

from modelpool.cluster.routing import DeviceRoom, ReplicaStats
from modelpool.core.ports import Clock
from modelpool.sim.models import ModelSet
from modelpool.types import Bytes, ModelId

Schedule = Callable[..., None]


class RayMultiplexNode:
    """A replica's multiplexed models: a count-capped LRU, one load at a time."""

    def __init__(
        self,
        node_id: str,
        models: ModelSet,
        max_models: int,
        clock: Clock,
        schedule: Schedule,
        served: Callable[[ModelId, float], None],
        *,
        changed: Callable[[RayMultiplexNode], None] | None = None,
    ) -> None:
        if max_models < 1:
            raise ValueError(f"max_num_models_per_replica must be >= 1, not {max_models}")
        self.node_id = node_id
        self.models = models
        self.max_models = max_models
        self.budget: Bytes = sum(models.budgets.values())
        self.clock = clock
        self._schedule = schedule
        self._served = served
        self._changed = changed
        self.counts = dict.fromkeys(
            ("hits", "cold_loads", "unloads", "rejected", "restores", "offloads", "over_memory"), 0
        )
        self.load_seconds = 0.0
        self.bytes_moved = 0
        self.loaded: OrderedDict[ModelId, Bytes] = OrderedDict()
        """Loaded models, least recently used first, with their bytes."""
        self.used: Bytes = 0
        self.loading: set[ModelId] = set()
        """Models waiting for the lock or loading."""
        self._lock_queue: deque[ModelId] = deque()
        self._holding_lock = False
        self._waiting: dict[ModelId, list[tuple[float, float]]] = {}
        """model -> (arrival, service seconds) of each request waiting for it."""
        self.queued = 0
        self.in_flight = 0
        self._stats: ReplicaStats | None = None

    def arrive(self, model_id: ModelId, arrived: float, service: float) -> None:
        self._stale()
        if model_id in self.loaded:
            self.loaded.move_to_end(model_id)
            self.counts["hits"] += 1
            self._serve(model_id, 0.0, service)
            return
        self._waiting.setdefault(model_id, []).append((arrived, service))
        self.queued += 1
        if model_id not in self.loading:
            self.loading.add(model_id)
            self._lock_queue.append(model_id)
            self._next_load()

    def _serve(self, model_id: ModelId, waited: float, service: float) -> None:
        self.in_flight += 1
        self._served(model_id, waited)
        self._schedule(service, self._done)

    def _done(self) -> None:
        self._stale()
        self.in_flight -= 1

    def _next_load(self) -> None:
        """Take the lock for the next model in line: evict, then load."""
        if self._holding_lock or not self._lock_queue:
            return
        model = self.models[self._lock_queue.popleft()]
        self._holding_lock = True
        seconds = 0.0
        while self.loaded and len(self.loaded) >= self.max_models:
            seconds += self._evict_least_recent()
        if self.loaded and self.used + model.bytes > self.budget:
            self.counts["over_memory"] += 1
        while self.loaded and (
            len(self.loaded) >= self.max_models or self.used + model.bytes > self.budget
        ):
            seconds += self._evict_least_recent()
        self.counts["cold_loads"] += 1
        self.bytes_moved += model.bytes
        self.load_seconds += model.load_seconds
        self._schedule(seconds + model.load_seconds, self._load_done, model.id)

    def _evict_least_recent(self) -> float:
        """Unload the least recently used model; the seconds it takes."""
        victim, size = self.loaded.popitem(last=False)
        self.used -= size
        self.counts["unloads"] += 1
        return self.models[victim].unload_seconds

    def _load_done(self, model_id: ModelId) -> None:
        self._stale()
        size = self.models[model_id].bytes
        self.loaded[model_id] = size
        self.used += size
        self.loading.discard(model_id)
        now = self.clock()
        for arrived, service in self._waiting.pop(model_id, []):
            self.queued -= 1
            self._serve(model_id, now - arrived, service)
        self._holding_lock = False
        self._next_load()

    def _stale(self) -> None:
        if self._stats is not None:
            self._stats = None
            if self._changed is not None:
                self._changed(self)

    def stats(self) -> ReplicaStats:
        """What the replica reports: its loaded models (``loading`` too, though Ray's
        router does not read it), its queue and one room for all its memory."""
        if self._stats is None:
            self._stats = ReplicaStats(
                self.node_id,
                frozenset(self.loaded),
                frozenset(self.loading),
                (DeviceRoom(self.budget - self.used),),
                in_flight=self.in_flight,
                queued=self.queued,
            )
        return self._stats
