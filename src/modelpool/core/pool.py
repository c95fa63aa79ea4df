"""ModelPool: the public face of the pool, an async shell around the scheduler.

The scheduler decides; this class carries its decisions out: it runs loads and
unloads as tasks that report back, turns waiting requests into futures with timeouts,
runs the TTL reaper, and publishes events. All of it on one asyncio loop, the pool's
run loop, so the scheduler's state has exactly one owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack

from modelpool.config import AUTO_STRATEGY, Config, ModelSpec, PoolSettings, record_specs
from modelpool.core.effects import AsyncEffects
from modelpool.core.estimates import EstimateStore
from modelpool.core.events import EventKind, PoolEvent
from modelpool.core.fallback import fallback_for
from modelpool.core.lease import Lease, LeaseOptions, Waiter
from modelpool.core.ports import (
    Backend,
    Clock,
    Closes,
    Estimating,
    EvictionPolicy,
    KeepsLogs,
    KeepsState,
    MemoryProbe,
    Prepares,
    SpansDevices,
    Traffic,
    can_offload,
    warm_bytes,
)
from modelpool.core.queries import can_fit, fit_problems, require_free, resource_status
from modelpool.core.replicas import ReplicaSet
from modelpool.core.scheduler import Scheduler
from modelpool.core.states import ModelState
from modelpool.core.sync import LoopThread, SyncFacade
from modelpool.core.traffic_window import TrafficWindow
from modelpool.errors import (
    ConfigError,
    ConfigIssue,
    ModelPoolError,
    PoolClosed,
    PreloadSkipped,
)
from modelpool.plugins import BACKENDS, POLICIES, PROBES
from modelpool.types import Bytes, DeviceId, ModelId, ModelSwitchingStrategy
from modelpool.units import parse_size

log = logging.getLogger("modelpool")

EVENT_HISTORY = 1000
RETUNABLE = frozenset(
    {
        "high_watermark",
        "low_watermark",
        "max_models",
        "device_max_models",
        "reap_interval",
        "placement",
        "starvation_limit",
        "wait_timeout",
    }
)
"""The settings ``ModelPool.retune`` may change while the pool runs."""
RECONFIGURABLE = RETUNABLE | {"budgets", "strategy", "strategy_options"}
"""The settings ``ModelPool.reconfigure`` may change while the pool runs."""


def make_policy(
    strategy: str | ModelSwitchingStrategy | EvictionPolicy,
    options: Mapping[str, Any] | None = None,
) -> EvictionPolicy:
    """A policy instance from a name, an enum member, or an instance (returned as is)."""
    if isinstance(strategy, str):  # StrEnum members are str too
        policy: EvictionPolicy = POLICIES.get(str(strategy))(**dict(options or {}))
        return policy
    return strategy


def make_probe(name: str, budgets: Mapping[DeviceId, Bytes]) -> MemoryProbe:
    """The probe a config names; ``static`` reports the budgets themselves as totals."""
    factory = PROBES.get(name)
    if name == "static":
        probe: MemoryProbe = factory(budgets)
    elif name == "auto":
        probe = factory(devices=list(budgets))
    else:
        probe = factory()
    return probe


class ModelPool(SyncFacade):
    """Keeps as many models resident as the budgets allow, loading others on demand.

    >>> pool = ModelPool([ModelSpec(id="a", backend="fake", memory="4GB", device="cpu")],
    ...                  budgets={"cpu": "10GB"}, strategy="lru")
    """

    def __init__(
        self,
        models: Iterable[ModelSpec] = (),
        *,
        settings: PoolSettings | None = None,
        budgets: Mapping[DeviceId, Bytes | str] | None = None,
        strategy: str | ModelSwitchingStrategy | EvictionPolicy | None = None,
        backends: Mapping[str, Backend] | None = None,
        probe: MemoryProbe | None = None,
        estimates: EstimateStore | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        clock: Clock = time.monotonic,
        drain_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        """``settings`` is the config's ``pool`` section (its defaults when None);
        ``budgets``, ``strategy`` (a name or a policy object) and any other of its fields
        given here (``warm_budget="8GB"``, ``max_queue=16``) replace its values, checked
        as the config checks them. ``state_dir=None``: nothing is kept on disk."""
        policy = strategy if isinstance(strategy, EvictionPolicy) else None
        named = None if policy is not None else strategy
        base = settings if settings is not None else PoolSettings()
        settings = base.changed(budgets=budgets, strategy=named, **options)
        self.settings = settings
        # One record per version: a spec's other versions become models ``id@version``.
        specs = [record for spec in models for record in record_specs(spec)]
        self._backends: dict[str, Backend] = dict(backends or {})
        for spec in specs:
            if spec.backend not in self._backends:
                self._backends[spec.backend] = BACKENDS.get(spec.backend)()
        self._clock = clock
        self._probe = probe
        self._estimates = estimates
        self._state_dir = Path(state_dir).expanduser() if state_dir is not None else None
        self._drain_timeout = drain_timeout
        self._effects = AsyncEffects(
            self._backends,
            lambda model_id: self._scheduler.resolve(model_id).spec,
            spawn=self._spawn,
            publish=self._publish,
            release=self.release,
            clock=clock,
            probe=probe,
            estimates=estimates,
            confirms_release=self._confirms_release,
            release_timeout=settings.release_timeout,
        )
        self._scheduler = Scheduler(
            specs,
            {spec.id: self._estimate(spec) for spec in specs},
            policy or make_policy(settings.starting_strategy, settings.strategy_options),
            self._effects,
            clock,
            settings,
            offloadable=[s.id for s in specs if can_offload(self._backends[s.backend], s)],
            spanning=[s.id for s in specs if isinstance(self._backends[s.backend], SpansDevices)],
            warm_size=lambda spec: warm_bytes(self._backends[spec.backend], spec),
        )
        self._effects.report_to(self._scheduler)
        self._check_devices(specs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: LoopThread | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._allocations: dict[str, list[Lease]] = {}
        self._events: deque[PoolEvent] = deque(maxlen=EVENT_HISTORY)
        self._listeners: list[asyncio.Queue[PoolEvent]] = []
        self._traffic: Traffic | None = None
        auto = settings.auto_options
        self.traffic_window = (
            TrafficWindow(auto.window, auto.max_requests)
            if settings.strategy == AUTO_STRATEGY
            else None
        )
        """The recent requests ``strategy: auto`` replays (None: the strategy is fixed)."""

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> ModelPool:
        """Build a pool from a validated ``Config`` (``overrides`` win, e.g. ``clock=``,
        ``probe=``)."""
        pool = config.pool
        wiring: dict[str, Any] = {
            "settings": pool,
            "probe": make_probe(pool.probe, pool.budgets),
            "estimates": EstimateStore(Path(pool.state_dir) / "estimates.json"),
            "state_dir": pool.state_dir,
        }
        return cls(config.models.values(), **(wiring | overrides))

    def _estimate(self, spec: ModelSpec) -> Bytes:
        measured = self._estimates.get(spec) if self._estimates is not None else None
        replica_set = ReplicaSet.of(spec)
        if measured is None and replica_set is not None and self._estimates is not None:
            # Its copies measure themselves (``id#1``...): the first one's speaks for all.
            measured = self._estimates.get(replica_set.member_spec(1))
        if measured is not None:
            return measured
        if spec.memory is not None:
            return spec.memory
        backend = self._backends[spec.backend]
        size = backend.estimate(spec) if isinstance(backend, Estimating) else None
        if size is None:
            raise ConfigError(
                [
                    ConfigIssue(
                        "<pool>",
                        f"models.{spec.id}.memory",
                        f"no memory estimate: backend {spec.backend!r} cannot measure before "
                        "loading, "
                        "so give one, e.g. memory: 4GB",
                    )
                ]
            )
        return int(size)

    def _check_devices(self, specs: list[ModelSpec]) -> None:
        issues = [
            ConfigIssue(
                "<pool>",
                f"models.{spec.id}.device",
                f"no budget for device {spec.device!r}; budgets: "
                f"{', '.join(self._scheduler.ledger.devices()) or 'none'}",
            )
            for spec in specs
            if spec.device != "auto" and spec.device not in self._scheduler.ledger
        ]
        if not self._scheduler.ledger.devices():
            issues.append(ConfigIssue("<pool>", "pool.budgets", "no device budgets given"))
        if issues:
            raise ConfigError(issues)

    # --- lifecycle ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._scheduler.stopping

    async def start(self) -> None:
        """Start the reaper and load pinned models. Call once, on the loop that serves."""
        if self._loop is not None:
            raise RuntimeError("the pool was already started")
        self._loop = asyncio.get_running_loop()
        if self._state_dir is not None:
            for backend in self._backends.values():
                if isinstance(backend, KeepsState):  # the process backend reaps orphans here
                    await backend.open(self._state_dir)
        if self.settings.prepare_backends:
            for backend in {id(b): b for b in self._backends.values()}.values():
                if isinstance(backend, Prepares):
                    self._spawn(self._prepare(backend))
        self._read_memory()  # before anything loads: what others use is the baseline
        self._schedule_tick()
        pinned = [r.model_id for r in self._scheduler.records() if r.pinned]
        results = await asyncio.gather(*(self.load(m) for m in pinned), return_exceptions=True)
        for model_id, result in zip(pinned, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("pinned model %s did not load at start: %s", model_id, result)
        # Preloads run behind requests: the pool serves while they load. Handed over
        # most important first, so that the first to start is the first in order.
        preloads = [
            (priority, r.model_id)
            for r in self._scheduler.records()
            if (priority := _preload_priority(r.spec)) is not None
        ]
        for priority, model_id in sorted(preloads):
            self._spawn(self._preload_at_start(model_id, priority))

    def start_configured_preload(self, model_id: str) -> bool:
        """Start, behind requests, the preload ``model_id``'s config asks for
        (``preload:``, as at start: a model a reload adds or turns it on for); False if
        it asks for none (or is pinned: pinned models load, they are not preloaded)."""
        priority = _preload_priority(self.spec(model_id))
        if priority is None or self.pinned(model_id):
            return False
        self._spawn(self._preload_at_start(model_id, priority))
        return True

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` as a task of the pool's (``stop`` waits for them all)."""
        task = self._require_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _prepare(self, backend: Prepares) -> None:
        try:
            await asyncio.to_thread(backend.prepare)
        except Exception as error:  # the first load will say it again, with its model
            log.warning("preparing backend %s failed: %s", type(backend).__name__, error)

    async def _preload_at_start(self, model: str, priority: int) -> None:
        try:
            await self.preload(model, priority)
        except (PoolClosed, asyncio.CancelledError):
            pass
        except ModelPoolError as error:
            log.warning("preload of %s failed: %s", model, error)

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Fail waiting requests, let leases drain (bounded), unload everything."""
        if self._loop is None or self._scheduler.stopping:
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        done = self._loop.create_future()
        self._scheduler.stop(token=done)
        timeout = self._drain_timeout if drain_timeout is None else drain_timeout
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            log.warning("leases or loads still out after %.1fs; stopping anyway", timeout)
            forced = self._loop.create_future()
            self._effects.abort_loads()
            self._scheduler.stop(token=forced, force=True)
            await forced
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for backend in {id(b): b for b in self._backends.values()}.values():
            if isinstance(backend, Closes):
                try:
                    await backend.close()
                except Exception as error:
                    log.error("closing backend %s failed: %s", type(backend).__name__, error)
        for queue in self._listeners:
            queue.put_nowait(_END)

    async def __aenter__(self) -> ModelPool:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _schedule_tick(self) -> None:
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(self.settings.reap_interval, self._tick)

    def _tick(self) -> None:
        self._scheduler.on_tick()
        self._read_memory()
        self._schedule_tick()

    def _read_memory(self) -> None:
        """Hand the probe's view of every device to the scheduler (drift, headroom)."""
        if self._probe is not None:
            for device in self._scheduler.ledger.devices():
                try:
                    reading = self._probe.read(device)
                except Exception as error:  # evidence is optional; the plan goes on
                    log.warning("memory probe %s failed on %s: %s", self._probe.name, device, error)
                    continue
                if reading is not None:
                    self._scheduler.on_memory_reading(reading)

    def _confirms_release(self, device: DeviceId) -> bool:
        """Whether the probe's reading of ``device`` is exact enough to confirm an unload:
        a GPU's is; host RAM moves with every other process and allocator, so it is not."""
        return device.startswith("cuda") and self._probe is not None

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise PoolClosed("the pool is not started: call `await pool.start()` first")
        return self._loop

    # --- using models -------------------------------------------------------------

    def use(self, model: str, **options: Unpack[LeaseOptions]) -> _Use:
        """``async with pool.use("id") as lease:`` loads if needed and pins while inside."""
        return _Use(self, model, options)

    async def acquire(self, model: str, **options: Unpack[LeaseOptions]) -> Lease:
        """A lease on ``model``, loading it (and evicting others) if needed.

        A model with versions is routed by the installed ``Traffic`` (sticky by ``key``
        when given); ``model@version`` asks for that version. A model that cannot load
        and names a ``fallback`` is served by that one: ``lease.model_id`` says which
        served (a ``fallback`` event says why); if the fallback refuses too, the model's
        own refusal is raised.
        """
        try:
            return await self._acquire(model, options)
        except ModelPoolError as error:
            record = self._scheduler.resolve(self.route(model, options.get("key")))
            fallback = fallback_for(record.spec, error)
            if fallback is None:
                raise
            failure, reason = error, str(error)
        try:
            lease = await self._acquire(fallback, options)
        except ModelPoolError as refused:
            self.publish(
                EventKind.FALLBACK, record.model_id, fallback=fallback, reason=reason,
                served=False, error=str(refused),
            )  # fmt: skip
            raise failure from refused
        self.publish(
            EventKind.FALLBACK, record.model_id, fallback=lease.model_id, reason=reason, served=True
        )
        return lease

    async def _acquire(self, model: str, options: LeaseOptions) -> Lease:
        loop = self._require_loop()
        future: asyncio.Future[Lease | None] = loop.create_future()
        name = self.route(model, options.get("key"))
        task_id, priority = options.get("task_id"), options.get("priority")
        result = self._scheduler.request(name, task_id, priority, token=future)
        if isinstance(result, Lease):
            return result
        lease = await self._wait(result, future, options.get("timeout"))
        assert lease is not None
        return lease

    def release(self, lease: Lease, ok: bool = True) -> None:
        """Give a lease back; ``ok=False`` counts an error against the model."""
        if lease.released:
            return
        self._scheduler.release(lease, ok)
        # A copy's lease (``id#2``) counts for its model: versions and replays know models.
        model_id = self._scheduler.model_id_of(lease.model_id)
        if self.traffic_window is not None:
            held = self._clock() - lease.granted_at
            self.traffic_window.record(model_id, lease.granted_at, held)
        if self._traffic is not None:
            self._traffic.record(model_id, self._clock() - lease.granted_at, ok)

    def route(self, name: str, key: str | None = None) -> str:
        """The name a request for ``name`` is served by: ``name`` itself unless it is a
        model whose versions share its traffic (then ``model@version``)."""
        if self._traffic is None or "@" in name:
            return name
        return self._traffic.route(name, key)

    def set_traffic(self, traffic: Traffic | None) -> None:
        """Install what routes requests between versions and hears how they went."""
        self._traffic = traffic

    async def _wait(
        self, waiter: Waiter, future: asyncio.Future[Lease | None], timeout: float | None
    ) -> Lease | None:
        loop = self._require_loop()
        timer = loop.call_later(
            self.settings.wait_timeout if timeout is None else timeout,
            self._scheduler.expire,
            waiter,
        )
        try:
            return await future
        except asyncio.CancelledError:
            # The caller went away. A lease granted in the meantime goes straight back.
            if future.done() and not future.cancelled() and future.exception() is None:
                lease = future.result()
                if lease is not None:
                    self._scheduler.release(lease)
            else:
                self._scheduler.cancel(waiter)
            raise
        finally:
            timer.cancel()

    async def load(self, model: str, timeout: float | None = None) -> None:
        """Make ``model`` resident now (evicting by policy if needed), without a lease."""
        loop = self._require_loop()
        future: asyncio.Future[Lease | None] = loop.create_future()
        waiter = self._scheduler.load(model, token=future)
        await self._wait(waiter, future, timeout)

    async def preload(self, model: str, priority: int | None = None) -> bool:
        """Load ``model`` ahead of need, behind every waiting request and only into room
        nobody needs (it evicts only preloads of a larger ``priority`` number). True once
        it is resident; False if it was skipped (the ``preload_skipped`` event says why).
        ``priority``: lower first, as a model's own (the default)."""
        loop = self._require_loop()
        future: asyncio.Future[Lease | None] = loop.create_future()
        waiter = self._scheduler.preload(model, priority, token=future)
        try:
            await future  # no timeout: a preload waits for a quiet moment, however long
        except PreloadSkipped:
            return False
        except asyncio.CancelledError:
            self._scheduler.cancel(waiter)
            raise
        return True

    async def unload(self, model: str) -> None:
        """Unload ``model`` once its leases are back; no new leases meanwhile."""
        loop = self._require_loop()
        future: asyncio.Future[Lease | None] = loop.create_future()
        self._scheduler.unload(model, token=future)
        await future

    def pin(self, model: str) -> None:
        """Never evict ``model`` (it still unloads on explicit request or stop)."""
        self._scheduler.pin(model, True)

    def unpin(self, model: str) -> None:
        self._scheduler.pin(model, False)

    def retune(self, **changes: Any) -> None:
        """Change, at run time, settings the pool reads as it goes: ``high_watermark``,
        ``low_watermark``, ``max_models``, ``device_max_models``, ``placement``,
        ``starvation_limit``, ``wait_timeout`` and ``reap_interval`` (the next check is
        rescheduled). Checked
        as the config checks them; a None leaves a setting as it is. Any other setting
        shapes the pool at construction and is a TypeError here. Call on the pool's loop."""
        fixed = sorted(set(changes) - RETUNABLE)
        if fixed:
            raise TypeError(f"set only at construction: {', '.join(fixed)}")
        self.settings = self.settings.changed(**changes)
        self._scheduler.retune(self.settings)
        if "reap_interval" in changes and self.running and self._tick_handle is not None:
            self._tick_handle.cancel()  # the next check at the new interval, not the old
            self._schedule_tick()

    def reconfigure(self, settings: PoolSettings) -> None:
        """Run with ``settings`` from now on (a config reload): the budgets of the
        devices it has (a smaller one evicts idle models until the plan fits), the
        strategy and its options, and what ``retune`` takes. Any other difference (a
        device added, ``strategy: auto`` turned on or off, the probe...) needs a new pool
        and is a TypeError here, before anything changes. Call on the pool's loop."""
        old = self.settings
        changed = {n for n in type(old).model_fields if getattr(old, n) != getattr(settings, n)}
        fixed = sorted(changed - RECONFIGURABLE)
        if set(settings.budgets) != set(old.budgets):
            fixed.append("the set of devices in budgets")
        if AUTO_STRATEGY in (old.strategy, settings.strategy) and old.strategy != settings.strategy:
            fixed.append("strategy: auto")
        if fixed:
            raise TypeError(f"set only at construction: {', '.join(fixed)}")
        budgets = {d: b for d, b in settings.budgets.items() if old.budgets[d] != b}
        self.settings = settings
        if budgets:
            self._scheduler.set_budgets(budgets)
        if changed & {"strategy", "strategy_options"} and settings.strategy != AUTO_STRATEGY:
            self.set_switching_strategy(settings.strategy, settings.strategy_options)
        self._scheduler.retune(settings)
        if "reap_interval" in changed and self.running and self._tick_handle is not None:
            self._tick_handle.cancel()
            self._schedule_tick()

    def set_ttl(self, model: str, ttl: float | None) -> None:
        """Unload ``model`` once idle ``ttl`` seconds, from now on (None: only by policy)."""
        self._scheduler.set_ttl(model, ttl)

    def pinned(self, model: str) -> bool:
        return self._scheduler.resolve(model).pinned

    # --- seed API -----------------------------------------------------------------

    async def allocate_model(self, model_id: str, task_id: str, priority: int = 5) -> bool:
        """Seed 000: lease ``model_id`` to ``task_id``; False (and a log line) on failure."""
        try:
            lease = await self.acquire(model_id, task_id=task_id, priority=priority)
        except ModelPoolError as error:
            log.warning("allocate_model(%s, %s) failed: %s", model_id, task_id, error)
            return False
        self._allocations.setdefault(task_id, []).append(lease)
        return True

    async def deallocate_model(self, task_id: str, success: bool = True) -> bool:
        """Seed 000: return every lease ``task_id`` holds; False if it held none."""
        leases = self._allocations.pop(task_id, [])
        for lease in leases:
            self.release(lease, success)
        return bool(leases)

    def set_switching_strategy(
        self,
        strategy: str | ModelSwitchingStrategy | EvictionPolicy,
        options: Mapping[str, Any] | None = None,
        **why: Any,
    ) -> None:
        """Change the eviction policy at run time, by name, enum member or instance;
        ``why`` (e.g. ``strategy: auto``'s reason and table) goes into the event."""
        self._scheduler.set_policy(make_policy(strategy, options), **why)

    @property
    def strategy(self) -> str:
        return self._scheduler.policy.name

    async def update_model_performance(
        self, model_id: str, response_time: float, success: bool = True
    ) -> None:
        """Seed 000: record a task's response time (seconds) and outcome."""
        self._scheduler.record_performance(model_id, response_time, success)

    def get_best_model_for_task(self, task_type: str) -> ModelId | None:
        """Seed 000: the model whose tags suit ``task_type`` best, weighted by health."""
        return self._scheduler.best_model_for_task(task_type)

    def state(self, model: str) -> ModelState:
        """The state of ``model``; of one with replicas, its most available copy's."""
        return self._scheduler.model_state(model)

    @property
    def specs(self) -> dict[ModelId, ModelSpec]:
        """Every configured model by id, in config order (a copy); a model with replicas
        once, under its own id (its copies ``id#1``... are records, not models)."""
        return self._scheduler.models()

    def spec(self, name: str) -> ModelSpec:
        """The spec of the model ``name`` (an id or an alias) names; ``UnknownModel`` if none."""
        return self._scheduler.model_spec(name)

    def resolve(self, name: str) -> ModelId:
        """The id of the model ``name`` (an id, an alias, or a copy's ``id#2``) names;
        ``UnknownModel`` if none."""
        return self._scheduler.model_id_of(name)

    def replicas(self, model: str) -> list[ModelId]:
        """The records that serve ``model``: ``id#1``... for a model with replicas, else
        the model's own id."""
        return [record.model_id for record in self._scheduler.copies(model)]

    def versions(self, model: str) -> dict[str, ModelId]:
        """The records of every version of ``model`` (an id, alias or ``id@version``),
        by version name, base version first."""
        base = self._scheduler.model_spec(model).base_id
        return {
            spec.version: model_id
            for model_id, spec in self._scheduler.models().items()
            if spec.base_id == base
        }

    def check_model(self, spec: ModelSpec) -> None:
        """Raise the ``ConfigError`` that adding ``spec`` (or replacing a model's settings
        with it) would: no budget for its device, no memory estimate. Adds nothing."""
        if spec.backend not in self._backends:
            self._backends[spec.backend] = BACKENDS.get(spec.backend)()
        self._check_devices([spec])
        self._estimate(spec)

    def add_model(self, spec: ModelSpec) -> None:
        """Make ``spec`` loadable from now on (a version registered at run time).
        Call on the pool's loop; raises ``ValueError`` if one of its names is taken."""
        if spec.backend not in self._backends:
            self._backends[spec.backend] = BACKENDS.get(spec.backend)()
        self._check_devices([spec])
        backend = self._backends[spec.backend]
        spans = isinstance(backend, SpansDevices)
        self._scheduler.add_model(spec, self._estimate(spec), can_offload(backend, spec), spans)

    def remove_model(self, model: str) -> None:
        """Forget a model that holds no memory; ``ModelBusy`` while it is loaded or wanted."""
        self._scheduler.remove_model(model)

    def retire_model(self, model: str) -> asyncio.Task[None]:
        """Take ``model`` out of service now and forget it once it has unloaded (after
        its leases are back): from this call on its aliases are free, requests for it
        are ``UnknownModel`` and those waiting are refused. The task ends when it is
        forgotten. Call on the pool's loop."""
        loop = self._require_loop()
        future: asyncio.Future[Lease | None] = loop.create_future()
        waiter = self._scheduler.retire(model, token=future)
        return self._spawn(self._forget_when_gone(waiter.model_id, future))

    async def _forget_when_gone(
        self, model_id: ModelId, gone: asyncio.Future[Lease | None]
    ) -> None:
        await gone
        self._scheduler.remove_model(model_id)

    def update_models(self, specs: Iterable[ModelSpec]) -> None:
        """Give models new metadata in place (tags, aliases, priority, ttl, pinned,
        defaults...): nothing unloads. Raises ``ValueError`` (and changes nothing) if an
        alias names another model. Call on the pool's loop."""
        self._scheduler.update_models(list(specs))

    def replace_model(self, spec: ModelSpec) -> asyncio.Task[None]:
        """Serve ``spec.id`` with settings that need a fresh load: it unloads once its
        leases are back (requests meanwhile wait) and the next load uses ``spec``. The
        task ends when ``spec`` is in force; it does not load the model again. Call on
        the pool's loop."""
        loop = self._require_loop()
        if spec.backend not in self._backends:
            self._backends[spec.backend] = BACKENDS.get(spec.backend)()
        self._check_devices([spec])
        offloadable = can_offload(self._backends[spec.backend], spec)
        future: asyncio.Future[Lease | None] = loop.create_future()
        self._scheduler.replace_model(spec, self._estimate(spec), offloadable, token=future)
        return self._spawn(self._settled(future))

    async def _settled(self, future: asyncio.Future[Lease | None]) -> None:
        await future

    def publish(self, kind: EventKind, model_id: ModelId | None, **detail: Any) -> None:
        """Publish an event of a layer above the pool (rollouts, alerts) with the pool's."""
        self._publish(PoolEvent(kind, model_id, self._clock(), detail))

    def log_tail(self, model: str, lines: int = 50) -> list[str]:
        """What a resident model's server last printed, for backends that keep a log."""
        record = self._scheduler.resolve(model)
        backend = self._backends[record.spec.backend]
        if record.handle is None or not isinstance(backend, KeepsLogs):
            return []
        try:
            return list(backend.log_tail(record.handle, lines))
        except (TypeError, LookupError):  # a handle this backend did not make (a warm copy)
            return []

    def log_since(self, model: str, count: int) -> tuple[list[str], int] | None:
        """What a resident model's server printed after the ``count``-th line, and the
        count to ask from next; None when it keeps no log now (not loaded, or a backend
        without one). A count from an earlier run of the model starts over."""
        record = self._scheduler.resolve(model)
        backend = self._backends[record.spec.backend]
        if record.handle is None or not isinstance(backend, KeepsLogs):
            return None
        try:
            lines, after = backend.log_since(record.handle, count)
        except (TypeError, LookupError):  # a handle this backend did not make (a warm copy)
            return None
        return list(lines), after

    def log_note(self, model: str, text: str) -> None:
        """Add ``text`` to a resident model's log (for backends that keep one); what the
        server answered when it failed, say, beside what it printed."""
        record = self._scheduler.resolve(model)
        backend = self._backends[record.spec.backend]
        if record.handle is None or not isinstance(backend, KeepsLogs):
            return
        with contextlib.suppress(TypeError, LookupError):  # not this backend's handle
            backend.log_note(record.handle, text)

    def can_fit(self, model: str, *, allow_eviction: bool = False) -> bool:
        """Whether ``model`` could load now: in free memory, or by evicting idle models."""
        return can_fit(self._scheduler, model, self._clock(), allow_eviction=allow_eviction)

    def fit_problems(self, *models: str) -> list[str]:
        """Why ``models`` could not all be resident at once; empty when they could."""
        return fit_problems(self._scheduler, list(models))

    def require_free(self, device: DeviceId, size: Bytes | str, purpose: str = "request") -> None:
        """Seed 002: raise ``InsufficientMemory`` (naming the holders) unless ``size`` is free."""
        require_free(self._scheduler, device, parse_size(size), purpose)

    def get_resource_status(self) -> dict[str, Any]:
        """Seed 000: loaded models, allocations, memory per device, per-model stats."""
        return resource_status(self._scheduler, self._probe, self._clock())

    # --- events -------------------------------------------------------------------

    def recent_events(self, limit: int | None = None) -> list[PoolEvent]:
        events = list(self._events)
        return events if limit is None else events[-limit:]

    def events(self) -> AsyncIterator[PoolEvent]:
        """Every event from this call on, until the pool stops (slow readers drop the
        oldest). Subscribes at once, so nothing between this call and iterating is lost."""
        queue: asyncio.Queue[PoolEvent] = asyncio.Queue(maxsize=EVENT_HISTORY)
        self._listeners.append(queue)
        return self._follow(queue)

    async def _follow(self, queue: asyncio.Queue[PoolEvent]) -> AsyncIterator[PoolEvent]:
        try:
            while (event := await queue.get()) is not _END:
                yield event
        finally:
            self._listeners.remove(queue)

    def _publish(self, event: PoolEvent) -> None:
        self._events.append(event)
        log.debug("%s %s %s", event.kind, event.model_id or "", dict(event.detail))
        for queue in self._listeners:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)


_END: Any = object()


class _Use:
    """The async context manager ``pool.use()`` returns (a class: cheaper than a generator)."""

    __slots__ = ("_lease", "_model", "_options", "_pool")

    def __init__(self, pool: ModelPool, model: str, options: LeaseOptions) -> None:
        self._pool, self._model, self._options = pool, model, options
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        self._lease = await self._pool.acquire(self._model, **self._options)
        return self._lease

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._lease is not None
        # Cancellation (a client that left) is not the model's fault; other errors are.
        self._pool.release(self._lease, ok=et is None or not issubclass(et, Exception))


def _preload_priority(spec: ModelSpec) -> int | None:
    """The priority of the preload ``spec`` asks for (``preload: true`` takes the model's
    own priority); None for no preload, and for a pinned model (it loads instead)."""
    if spec.preload is False or spec.pinned:
        return None
    return spec.priority if spec.preload is True else int(spec.preload)
