"""Replays a workload through the pool's own ``Scheduler`` on a virtual clock.

This is a discrete-event simulation with the real decision code in the middle: the
scheduler, its planner, ledger, warm tier and the eviction policy are the ones the pool
runs. Only the slow work is simulated. The simulation plays ``Effects`` (core/ports.py):
a load the scheduler starts becomes an event ``load_seconds`` later that calls
``on_load_done``, exactly as the pool's asyncio shell reports a finished task, and a
granted lease becomes an event ``service`` seconds later that returns it.

Each model serves any number of requests at once (a batching server), so a request
waits only for its model to be brought in; that wait is what strategies differ in. A
model with ``max_concurrent`` serves that many at once per copy (``replicas``): the
rest wait for a slot, as in the pool.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelpool.config import ModelSpec, PoolSettings
from modelpool.core.events import PoolEvent
from modelpool.core.lease import Lease, Waiter
from modelpool.core.ports import HOST, EvictionPolicy, Handle, Placement
from modelpool.core.scheduler import Scheduler
from modelpool.core.testing import ManualClock
from modelpool.core.traffic_window import Arrival
from modelpool.errors import ModelPoolError
from modelpool.sim.models import ModelSet, SimModel
from modelpool.sim.results import RunResult, wait_figures
from modelpool.sim.workload import Request, Workload
from modelpool.types import Bytes, DeviceId, ModelId

EXCLUSIVE_GROUP = "exclusive"
TICK_SECONDS = 1.0
"""How often the scheduler's periodic check runs while requests wait (the pool's
``reap_interval`` default): it is what lets a starving request drain busy models."""
DROP_SECONDS = 0.05
"""Freeing a warm copy in host RAM."""


def _spec(model: SimModel, group: str | None) -> ModelSpec:
    """The pool spec a simulated model stands for. A version's record (``m@v2``, from a
    pool's own picture) is named as the pool names it: validated under its model's id,
    then given its own, as ``config.version_spec`` does."""
    base, _, version = model.id.partition("@")
    spec = ModelSpec(
        id=base, backend="fake", memory=model.bytes, device=model.device,
        devices=model.devices, tags=model.tags, priority=model.priority, group=group,
        replicas=model.replicas, max_concurrent=model.max_concurrent,
    )  # fmt: skip
    if not version:
        return spec
    return spec.model_copy(update={"id": model.id, "version": version})


class Simulation:
    """One replay of ``workload`` on ``models`` with one eviction ``policy``.

    ``exclusive``: every model in one exclusive group, so one is resident at a time
    (llama-swap's default); ``warm_budget`` 0 turns the warm tier off.
    """

    def __init__(
        self,
        workload: Workload,
        models: ModelSet,
        policy: EvictionPolicy,
        *,
        budgets: Mapping[DeviceId, Bytes] | None = None,
        warm_budget: Bytes | None = None,
        exclusive: bool = False,
        slo: float = 5.0,
        label: str | None = None,
        settings: PoolSettings | None = None,
        every: tuple[float, Callable[[Simulation], None]] | None = None,
    ) -> None:
        """``every``: (seconds, hook) calls ``hook(self)`` every so many virtual seconds
        while requests are still to come (``strategy: auto`` replayed: ``sim/auto_replay``)."""
        models.check_serves(workload)
        self.workload = workload
        self.models = models
        self.label = label or policy.name
        self.slo = slo
        self.clock = ManualClock(0.0)
        group = EXCLUSIVE_GROUP if exclusive else None
        specs = [_spec(m, group) for m in models.models]
        self.scheduler = Scheduler(
            specs,
            {m.id: m.bytes for m in models.models},
            policy,
            self,
            self.clock,
            (settings or PoolSettings()).changed(
                budgets=dict(budgets if budgets is not None else models.budgets),
                warm_budget=models.warm_budget if warm_budget is None else warm_budget,
            ),
            offloadable=[m.id for m in models.models if m.offloadable],
        )
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._tick_pending = False
        self._arriving = (0.0, 0.0)
        self._waiting: dict[int, tuple[float, float]] = {}
        """waiter id -> (arrival time, service seconds)."""
        self._waits: list[float] = []
        self._counts = dict.fromkeys(
            ("hits", "cold_loads", "warm_restores", "offloads", "unloads", "rejected", "preloads"),
            0,
        )
        self._preloading: set[int] = set()
        """Waiter ids of preloads not yet answered."""
        self._left = len(workload.requests)
        """Requests still to arrive."""
        self._bytes_moved = 0
        self._load_seconds = 0.0
        self._every = every
        self.latencies_by_model: dict[ModelId, list[float]] = {}
        """Each served request's wait plus service, by the model it asked for (a copy's:
        its model's)."""
        self.arrived: list[Arrival] = []
        """The requests so far, with their service seconds (what a pool's window holds)."""

    # --- the event loop -----------------------------------------------------------

    def run(self) -> RunResult:
        started = time.perf_counter()
        self._start_preloads()
        if self._every is not None:
            self._at(self._every[0], self._periodic)
        self._play()
        return self._result(time.perf_counter() - started)

    def fork(self) -> Simulation:
        """A copy of this simulation as it stands, to be played on with ``continue_with``:
        what is resident and warm, each model's stats, the loads, leases and waiting
        requests in flight, the policy's state. Its figures start from zero, and it has
        no periodic hook. Called from a hook, it asks "what if, from here..."."""
        left_out: dict[int, Any] = {
            id(self.workload): Workload(self.workload.name, ()),
            id(self.arrived): [],
            id(self._waits): [],
            id(self.latencies_by_model): {},
            id(self._every): None,
        }  # not copied: the past requests and their figures, the hook
        fork = copy.deepcopy(self, left_out)
        fork._counts = dict.fromkeys(self._counts, 0)
        fork._bytes_moved, fork._load_seconds = 0, 0.0
        return fork

    def continue_with(
        self, requests: Sequence[Request], policy: EvictionPolicy | None = None
    ) -> RunResult:
        """Play ``requests`` (at or after the clock's time, sorted) from the state this
        simulation is in (a ``fork``), with ``policy`` from now on if given. The result
        counts what happens from here: the waits of these requests and of those already
        waiting, the loads, the moves."""
        started = time.perf_counter()
        if requests and requests[0].time < self.clock.now:
            raise ValueError(
                f"continue_with: the first request is at {requests[0].time:g} s, "
                f"before the simulation's clock ({self.clock.now:g} s)"
            )
        if policy is not None:
            self.scheduler.set_policy(policy)
            self.label = policy.name
        self.workload = Workload(self.workload.name, tuple(requests))
        self._left = len(requests)
        self._play()
        return self._result(time.perf_counter() - started)

    def _play(self) -> None:
        """The event loop: each request of the workload and each event, in time order."""
        requests = self.workload.requests
        events = self._events
        index = 0
        while index < len(requests) or events:
            arrival = requests[index].time if index < len(requests) else math.inf
            if events and events[0][0] <= arrival:  # what finishes first is seen first
                when, _, handler, args = heapq.heappop(events)
                self.clock.now = when
                handler(*args)
            else:
                self.clock.now = arrival
                self._arrive(index)
                index += 1
                self._left = len(requests) - index

    def _start_preloads(self) -> None:
        """The model set's preloads, handed to the scheduler at time 0, most important
        first, as ``ModelPool.start`` does."""
        preloads = sorted((m.preload, m.id) for m in self.models.models if m.preload is not None)
        for priority, model_id in preloads:
            waiter = self.scheduler.preload(model_id, priority)
            self._preloading.add(waiter.waiter_id)
        if preloads:
            self._keep_ticking()

    def _periodic(self) -> None:
        if self._every is None:
            return  # a fork: the hook stayed with the simulation it was forked from
        seconds, hook = self._every
        hook(self)
        if self._left > 0:
            self._at(seconds, self._periodic)

    def _at(self, delay: float, handler: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._events, (self.clock.now + delay, next(self._order), handler, args))

    def _arrive(self, index: int) -> None:
        request = self.workload.requests[index]
        model = self.models[request.model]
        service = request.service
        if service is None:
            service = model.service_seconds(request.prompt_tokens, request.output_tokens)
        if self._every is not None:
            self.arrived.append(Arrival(request.time, request.model, service))
        # The scheduler may grant a queued request inside ``request`` itself (its model
        # was just freed by a drain): ``grant`` then finds it here.
        self._arriving = (request.time, service)
        try:
            answer = self.scheduler.request(request.model)
        except ModelPoolError:
            self._counts["rejected"] += 1  # can never fit: the pool refuses it at once
            return
        if isinstance(answer, Lease):
            self._counts["hits"] += 1
            self._served(answer, 0.0, service)
            return
        self._waiting[answer.waiter_id] = (request.time, service)
        self._keep_ticking()

    def _served(self, lease: Lease, waited: float, service: float) -> None:
        self._waits.append(waited)
        model = lease.model_id.partition("#")[0]
        self.latencies_by_model.setdefault(model, []).append(waited + service)
        self._at(service, self.scheduler.release, lease, True, service)

    def _keep_ticking(self) -> None:
        if not self._tick_pending:
            self._tick_pending = True
            self._at(TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        self._tick_pending = False
        self.scheduler.on_tick()
        # Watermarks act on ticks even when nothing waits: keep the clock ticking while
        # requests are still to come (not forever, or the replay would never end).
        watermarks = self.scheduler.settings.high_watermark is not None and self._left > 0
        if self.scheduler.waiting or watermarks:
            self._keep_ticking()

    def _model(self, record_id: ModelId) -> SimModel:
        """The simulated model a pool record stands for: a copy (``m#2``) is its model."""
        return self.models[record_id.partition("#")[0]]

    # --- Effects: what the scheduler asks for, done on the virtual clock ----------

    def start_load(self, spec: ModelSpec, placement: Placement) -> None:
        device = placement.device
        model = self._model(spec.id)
        self._counts["cold_loads"] += 1
        self._moved(model.bytes, model.load_seconds)
        self._at(model.load_seconds, self._load_done, spec.id, device, model.load_seconds)

    def start_restore(self, warm: Handle, device: DeviceId) -> None:
        model = self._model(warm.model_id)
        seconds = model.restore_seconds or 0.0
        self._counts["warm_restores"] += 1
        self._moved(model.bytes, seconds)
        self._at(seconds, self._load_done, warm.model_id, device, seconds)

    def start_offload(self, handle: Handle) -> None:
        model = self._model(handle.model_id)
        seconds = model.offload_seconds
        if seconds is None:
            seconds = model.restore_seconds or 0.0
        self._counts["offloads"] += 1
        self._bytes_moved += model.bytes
        warm = Handle(model.id, HOST, footprint=model.bytes)
        self._at(seconds, self.scheduler.on_offload_done, model.id, warm, None, seconds)

    def start_unload(self, handle: Handle, booked: Bytes = 0) -> None:
        if handle.device == HOST:
            self._at(DROP_SECONDS, self.scheduler.on_unload_done, handle.model_id)
            return
        self._counts["unloads"] += 1
        seconds = self._model(handle.model_id).unload_seconds
        self._at(seconds, self.scheduler.on_unload_done, handle.model_id)

    def grant(self, waiter: Waiter, lease: Lease | None) -> None:
        if waiter.waiter_id in self._preloading:
            self._preloading.discard(waiter.waiter_id)
            self._counts["preloads"] += 1
            return
        arrived, service = self._waiting.pop(waiter.waiter_id, self._arriving)
        assert lease is not None  # requests ask for leases; only preloads do not
        self._served(lease, self.clock.now - arrived, service)

    def reject(self, waiter: Waiter, error: ModelPoolError) -> None:
        if waiter.waiter_id in self._preloading:
            self._preloading.discard(waiter.waiter_id)  # skipped: no room nobody needed
            return
        self._waiting.pop(waiter.waiter_id, None)
        self._counts["rejected"] += 1

    def emit(self, event: PoolEvent) -> None:
        pass  # the figures are counted where the work is started

    def _moved(self, size: Bytes, seconds: float) -> None:
        self._bytes_moved += size
        self._load_seconds += seconds

    def _load_done(self, model_id: ModelId, device: DeviceId, seconds: float) -> None:
        handle = Handle(model_id, device, footprint=self._model(model_id).bytes)
        self.scheduler.on_load_done(model_id, handle, None, seconds)

    def _result(self, wall: float) -> RunResult:
        waits = sorted(self._waits)
        counts = self._counts
        return RunResult(
            label=self.label,
            requests=len(self.workload.requests),
            rejected=counts["rejected"],
            hits=counts["hits"],
            cold_loads=counts["cold_loads"],
            warm_restores=counts["warm_restores"],
            offloads=counts["offloads"],
            unloads=counts["unloads"],
            preloads=counts["preloads"],
            **wait_figures(waits, self.slo),
            bytes_moved=self._bytes_moved,
            load_seconds=self._load_seconds,
            simulated_seconds=self.clock.now,
            wall_seconds=wall,
        )
