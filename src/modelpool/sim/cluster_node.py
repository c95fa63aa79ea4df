"""One node of a simulated cluster: the pool's own ``Scheduler`` over the node's GPUs.

The node plays ``Effects`` (core/ports.py) for its scheduler as ``sim/engine.py`` does
for one box: a load becomes an event ``load_seconds`` later on the cluster's shared
virtual clock, a granted lease comes back ``service`` seconds later. It also keeps what
a replica reports to the router (``cluster.routing.ReplicaStats``): the models READY
and on their way there, each device's free bytes and idle models, and its requests.

A model joins a node's scheduler the first time a request is routed there (a node's
books hold only the models it has seen, so a decision costs what it costs on one box).
"""

from __future__ import annotations

from collections.abc import Callable

from modelpool.cluster.routing import DeviceRoom, Evictable, ReplicaStats
from modelpool.config import ModelSpec, PoolSettings
from modelpool.core.events import PoolEvent
from modelpool.core.lease import Lease, Waiter
from modelpool.core.ports import HOST, Clock, EvictionPolicy, Handle, Placement
from modelpool.core.scheduler import Scheduler
from modelpool.core.states import ModelState
from modelpool.errors import ModelPoolError
from modelpool.sim.engine import DROP_SECONDS, TICK_SECONDS
from modelpool.sim.models import ModelSet
from modelpool.types import DeviceId, ModelId

Schedule = Callable[..., None]
"""``schedule(delay, handler, *args)``: call ``handler(*args)`` ``delay`` seconds later."""


class SimNode:
    """A node's pool on the cluster's clock, and its report to the router."""

    def __init__(
        self,
        node_id: str,
        models: ModelSet,
        policy: EvictionPolicy,
        settings: PoolSettings,
        clock: Clock,
        schedule: Schedule,
        served: Callable[[ModelId, float], None],
        *,
        changed: Callable[[SimNode], None] | None = None,
    ) -> None:
        """``served(model, wait)`` is told each request's wait when it is granted;
        ``changed(node)`` each time the node's report goes stale (so a router's list of
        reports is refreshed for the nodes that changed only)."""
        self.node_id = node_id
        self.models = models
        self.clock = clock
        self._schedule = schedule
        self._served = served
        self.scheduler = Scheduler([], {}, policy, self, clock, settings)
        self.counts = dict.fromkeys(
            ("hits", "cold_loads", "unloads", "rejected", "restores", "offloads"), 0
        )
        self.load_seconds = 0.0
        self.bytes_moved = 0
        self.ready: set[ModelId] = set()
        self.loading: set[ModelId] = set()
        self.in_flight = 0
        self._waiting: dict[int, tuple[float, float]] = {}
        """waiter id -> (arrival time, service seconds)."""
        self._arriving = (0.0, 0.0)
        self._tick_pending = False
        self._stats: ReplicaStats | None = None
        self._rooms_now: tuple[DeviceRoom, ...] | None = None
        self._changed = changed
        self._busy: dict[ModelId, int] = {}
        """Requests in flight per model."""
        self._known: set[ModelId] = set()
        """Models added to this node's scheduler."""
        self._queued: dict[ModelId, int] = {}
        """Requests waiting per model (for its load, or for a slot: ``max_concurrent``)."""

    # --- requests -----------------------------------------------------------------

    def arrive(self, model_id: ModelId, arrived: float, service: float) -> None:
        """A request routed here."""
        self._stale()
        scheduler = self.scheduler
        if model_id not in self._known:
            self._add(model_id)
        self._arriving = (arrived, service)
        try:
            answer = scheduler.request(model_id)
        except ModelPoolError:
            self.counts["rejected"] += 1
            return
        if isinstance(answer, Lease):
            self.counts["hits"] += 1
            self._grant(answer, 0.0, service)
            return
        self._stale(rooms=True)  # a plan may have booked memory
        if model_id not in self.ready:
            self.loading.add(model_id)
        self._waiting[answer.waiter_id] = (arrived, service)
        self._queued[model_id] = self._queued.get(model_id, 0) + 1
        self._keep_ticking()

    def _add(self, model_id: ModelId) -> None:
        model = self.models[model_id]
        spec = ModelSpec(
            id=model.id, backend="fake", memory=model.bytes, device=model.device,
            devices=model.devices, tags=model.tags, priority=model.priority,
            max_concurrent=model.max_concurrent,
        )  # fmt: skip
        self.scheduler.add_model(spec, model.bytes)
        self._known.add(model_id)

    def _grant(self, lease: Lease, waited: float, service: float) -> None:
        self.in_flight += 1
        self._busy[lease.model_id] = self._busy.get(lease.model_id, 0) + 1
        self._served(lease.model_id, waited)
        self._schedule(service, self._release, lease, service)

    def _release(self, lease: Lease, service: float) -> None:
        self._stale(rooms=True)  # the model was just used: its eviction costs more
        self.in_flight -= 1
        left = self._busy[lease.model_id] - 1
        if left:
            self._busy[lease.model_id] = left
        else:
            del self._busy[lease.model_id]
        self.scheduler.release(lease, True, service)

    def _keep_ticking(self) -> None:
        if not self._tick_pending:
            self._tick_pending = True
            self._schedule(TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        self._tick_pending = False
        self._stale(rooms=True)
        self.scheduler.on_tick()
        if self.scheduler.waiting:
            self._keep_ticking()

    # --- the report to the router ---------------------------------------------------

    def _stale(self, rooms: bool = False) -> None:
        """Something reported changed; ``rooms``: free bytes or idle models too."""
        if rooms:
            self._rooms_now = None
        if self._stats is not None:
            self._stats = None
            if self._changed is not None:
                self._changed(self)

    def stats(self) -> ReplicaStats:
        """What this node would report now (kept until something here changes)."""
        if self._stats is None:
            self._stats = ReplicaStats(
                self.node_id,
                frozenset(self.ready),
                frozenset(self.loading),
                self._rooms_now if self._rooms_now is not None else self._rooms(),
                in_flight=self.in_flight,
                queued=self.scheduler.waiting,
                busy=frozenset(self._busy),
                saturated=self._saturated(),
            )
        return self._stats

    def _saturated(self) -> frozenset[ModelId]:
        """Models a new request would wait behind others for (``reports.saturated``'s
        rule; one copy of each model per node): READY with requests waiting for a slot
        or at ``max_concurrent`` in flight, loading with ``max_concurrent`` waiting."""
        models, ready = self.models, self.ready
        out = []
        for model_id, queued in self._queued.items():  # only models in use can be
            limit = models[model_id].max_concurrent
            if model_id in ready or (limit is not None and queued >= limit):
                out.append(model_id)
        for model_id, serving in self._busy.items():
            limit = models[model_id].max_concurrent
            if limit is not None and serving >= limit and model_id not in self._queued:
                out.append(model_id)
        return frozenset(out)

    def _rooms(self) -> tuple[DeviceRoom, ...]:
        scheduler = self.scheduler
        now = self.clock()
        rooms = []
        for account in scheduler.ledger:
            idle = tuple(
                # What it holds on this device: a model spread over several frees its share.
                Evictable(
                    r.model_id,
                    account.committed.get(r.model_id, r.estimate),
                    self.models[r.model_id].load_seconds,
                    now - r.stats.last_used if r.stats.last_used else 0.0,
                )
                for r in scheduler.residents(account.device).values()
                if r.state is ModelState.READY and not r.pinned
            )
            rooms.append(DeviceRoom(account.planned_free, idle))
        self._rooms_now = tuple(rooms)
        return self._rooms_now

    # --- Effects: what the scheduler asks for, done on the virtual clock ----------

    def start_load(self, spec: ModelSpec, placement: Placement) -> None:
        self._stale(rooms=True)
        model = self.models[spec.id]
        self.counts["cold_loads"] += 1
        self.bytes_moved += model.bytes
        self.load_seconds += model.load_seconds
        self.loading.add(spec.id)
        seconds = model.load_seconds
        self._schedule(seconds, self._load_done, spec.id, placement.device, seconds)

    def _load_done(self, model_id: ModelId, device: DeviceId, seconds: float) -> None:
        self._stale(rooms=True)
        self.loading.discard(model_id)
        self.ready.add(model_id)
        handle = Handle(model_id, device, footprint=self.models[model_id].bytes)
        self.scheduler.on_load_done(model_id, handle, None, seconds)

    def start_restore(self, warm: Handle, device: DeviceId) -> None:
        self._stale(rooms=True)
        model = self.models[warm.model_id]
        seconds = model.restore_seconds or 0.0
        self.counts["restores"] += 1
        self.loading.add(model.id)
        self._schedule(seconds, self._load_done, model.id, device, seconds)

    def start_offload(self, handle: Handle) -> None:
        self._stale(rooms=True)
        model = self.models[handle.model_id]
        self.ready.discard(model.id)
        seconds = model.offload_seconds or model.restore_seconds or 0.0
        self.counts["offloads"] += 1
        warm = Handle(model.id, HOST, footprint=model.bytes)
        self._schedule(seconds, self._offload_done, model.id, warm, seconds)

    def _offload_done(self, model_id: ModelId, warm: Handle, seconds: float) -> None:
        self._stale(rooms=True)
        self.scheduler.on_offload_done(model_id, warm, None, seconds)

    def start_unload(self, handle: Handle, booked: int = 0) -> None:
        self._stale(rooms=True)
        if handle.device == HOST:
            self._schedule(DROP_SECONDS, self._unload_done, handle.model_id)
            return
        self.ready.discard(handle.model_id)
        self.counts["unloads"] += 1
        self._schedule(self.models[handle.model_id].unload_seconds, self._unload_done,
                       handle.model_id)  # fmt: skip

    def _unload_done(self, model_id: ModelId) -> None:
        self._stale(rooms=True)
        self.scheduler.on_unload_done(model_id)

    def grant(self, waiter: Waiter, lease: Lease | None) -> None:
        self._stale()
        waited = self._waiting.pop(waiter.waiter_id, None)
        if waited is not None:
            self._dequeue(waiter.model_id)
        arrived, service = waited or self._arriving
        assert lease is not None  # requests ask for leases; this node preloads nothing
        self.loading.discard(waiter.model_id)
        self._grant(lease, self.clock() - arrived, service)

    def reject(self, waiter: Waiter, error: ModelPoolError) -> None:
        self._stale()
        if self._waiting.pop(waiter.waiter_id, None) is not None:
            self._dequeue(waiter.model_id)
        self.counts["rejected"] += 1
        if not self.scheduler.resolve(waiter.model_id).waiters:
            self.loading.discard(waiter.model_id)

    def _dequeue(self, model_id: ModelId) -> None:
        left = self._queued.get(model_id, 0) - 1
        if left > 0:
            self._queued[model_id] = left
        else:
            self._queued.pop(model_id, None)

    def emit(self, event: PoolEvent) -> None:
        pass  # the figures are counted where the work is started
