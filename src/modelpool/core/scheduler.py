"""The scheduler: the one owner of the pool's mutable state.

Every method here is a *handler*: it runs to completion without awaiting, so no
decision is ever taken on a stale snapshot, and it tells the world what to do only
through ``Effects`` (start a load, start an unload, answer a waiting request). Slow
work reports back by calling another handler (``on_load_done``, ``on_unload_done``).
The pool's asyncio loop is the run loop: it is the only caller of these handlers.
Unit tests call them directly, with a recording ``Effects`` and a manual clock.

Scheduling of waiting requests (``_dispatch``):

1. Requests for a resident model are granted at once (a hit never queues).
2. Models with waiting requests are considered in order of their most important
   waiter, then their oldest; a model loaded once serves its whole queue, so
   A B A B arriving under a one-model budget is served A A B B.
3. A load whose memory is held by leases waits for them to come back. If its oldest
   request has waited ``starvation_limit`` seconds, the holders chosen by the policy
   are *drained* (no new leases) so they free the memory soon; meanwhile no later
   plan may take memory on that device. Leases are never cut off.
4. Plans on one device whose victims do not overlap run in parallel.

Evicted models whose backend can offload go to the warm tier (``core/warm.py``) when
the warm budget has room, and come back from it by a restore instead of a cold load.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from modelpool.config import ModelSpec, PoolSettings
from modelpool.core.bookings import Bookings, shares
from modelpool.core.demand import DemandTracker
from modelpool.core.events import EventKind, PoolEvent
from modelpool.core.lease import Lease, Waiter
from modelpool.core.ledger import DeviceAccount, MemoryLedger
from modelpool.core.memory_watch import MemoryWatch
from modelpool.core.moves import Moves, WarmSize
from modelpool.core.placement import PLACEMENTS, place_across, place_one, spread
from modelpool.core.planner import Go, Impossible, Plan, Wait, choose_drain, plan_load
from modelpool.core.ports import (
    HOST,
    Clock,
    Effects,
    EvictionContext,
    EvictionPolicy,
    Handle,
    MemoryReading,
)
from modelpool.core.preloads import PendingPreloads, preload_refusal
from modelpool.core.queue import WaitQueue
from modelpool.core.record import ModelRecord
from modelpool.core.registry import ModelRegistry
from modelpool.core.replicas import (
    EXTRA_IDLE_SECONDS,
    ReplicaSet,
    ReplicaView,
    outweighs,
    pick,
    spare,
    wants_another,
)
from modelpool.core.retry import RetryPolicy
from modelpool.core.slots import Cap, counts_toward, within_caps
from modelpool.core.specialization import best_model_for_task
from modelpool.core.states import RESIDENT, ModelState
from modelpool.core.warm import WarmTier
from modelpool.core.watermarks import above_high_watermark
from modelpool.errors import (
    DoesNotFit,
    Holder,
    InsufficientMemory,
    LoadFailed,
    ModelBusy,
    ModelPoolError,
    ModelQueueFull,
    PoolClosed,
    PreloadSkipped,
    UnknownModel,
    WaitTimeout,
)
from modelpool.types import Bytes, DeviceId, ModelId

_AVAILABILITY = (
    ModelState.READY,
    ModelState.LOADING,
    ModelState.UNLOADING,
    ModelState.WARM,
    ModelState.FAILED,
    ModelState.UNLOADED,
)
"""States from the most available to the least: a model is as available as its best copy."""


class Scheduler:
    """Decides what is loaded where, who waits, and what is evicted."""

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        estimates: Mapping[ModelId, Bytes],
        policy: EvictionPolicy,
        effects: Effects,
        clock: Clock,
        settings: PoolSettings,
        offloadable: Iterable[ModelId] = (),
        spanning: Iterable[ModelId] = (),
        rng: random.Random | None = None,
        warm_size: WarmSize = lambda spec: None,
    ) -> None:
        """``settings`` are the config's ``pool`` section: the budgets and the warm budget
        the books start from, and the queue, retry and starvation knobs. ``spanning``:
        the models whose backend can spread one over several devices, which happens
        when no one device could ever hold it (or when its ``devices`` asks). ``rng``
        draws the two copies a request compares when a model has many
        (``core/replicas.py``). ``warm_size``: what a model's warm copy will hold, when
        its backend knows (a kept model file), booked from the start of its offload."""
        self.settings = settings
        budgets = settings.budgets
        self.ledger = MemoryLedger(budgets)
        offloadable = set(offloadable)
        self.warm = WarmTier(settings.warm_budget, offloadable)
        self._spanning = set(spanning)
        self.policy = policy
        self._effects = effects
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._models = ModelRegistry()
        for spec in specs:
            self._models.add(spec, estimates[spec.id])
        # A copy can what its model can (offload, span): the shell names models.
        for replica_set in self._models.replica_sets():
            for member in replica_set.members:
                if replica_set.model_id in offloadable:
                    self.warm.allow_offload(member)
                if replica_set.model_id in self._spanning:
                    self._spanning.add(member)
        self._bookings = Bookings(self.ledger, self.settings.group_scope)
        self._moves = Moves(self._bookings, self.warm, effects, self._emit, warm_size)
        self._memory_watch = MemoryWatch(
            budgets, self.settings.headroom, self.settings.drift_threshold
        )
        self._ids = itertools.count(1)
        self._queue = WaitQueue(self.settings.max_queue)
        self._preloads = PendingPreloads()
        self._retry = RetryPolicy(
            self.settings.restart_backoff,
            self.settings.max_restart_backoff,
            self.settings.max_failures,
        )
        self._draining: set[ModelId] = set()
        self._replacements: dict[ModelId, tuple[ModelSpec, Bytes, bool]] = {}
        """New settings that wait for their model to hold nothing: (spec, estimate, offloadable)."""
        self._demand = DemandTracker()
        self._stop_waiters: list[Waiter] = []
        self._stopping = False
        self._dispatching = False
        self._dispatch_again = False

    # --- lookups ------------------------------------------------------------------

    def resolve(self, name: str) -> ModelRecord:
        """The record for a model id or alias; ``UnknownModel`` otherwise."""
        return self._models.resolve(name)

    def records(self) -> list[ModelRecord]:
        """Every record: one per model, one per copy of a model with replicas."""
        return list(self._models.values())

    def copies(self, name: str) -> list[ModelRecord]:
        """The records that serve ``name``: every copy of a model with replicas
        (``id#1`` first), else the one record it names."""
        return self._models.copies(name)

    def replica_set(self, name: str) -> ReplicaSet | None:
        """The copies ``name`` (a model's name, or one copy's id) belongs to; None for a
        model served by one record."""
        return self._models.replica_set(name)

    def model_id_of(self, name: str) -> ModelId:
        """The id of the model ``name`` names: a copy's id names its model too."""
        return self._models.model_id_of(name)

    def model_spec(self, name: str) -> ModelSpec:
        """The spec of the model ``name`` names (the model's, not a copy's)."""
        return self._models.model_spec(name)

    def models(self) -> dict[ModelId, ModelSpec]:
        """Every model by id, in config order: the copies of a model count once."""
        return self._models.models()

    def model_state(self, name: str) -> ModelState:
        """The state of the model ``name`` names: its most available copy's (READY when
        one serves, else LOADING when one loads...)."""
        return min((r.state for r in self.copies(name)), key=_AVAILABILITY.index)

    # --- the set of models --------------------------------------------------------

    def add_model(
        self, spec: ModelSpec, estimate: Bytes, offloadable: bool = False, spans: bool = False
    ) -> None:
        """Make ``spec`` (a new version of a model, say) loadable from now on."""
        taken = self._models.names_taken(spec)
        if taken:
            raise ValueError(f"{', '.join(map(repr, taken))} already names a model")
        record = self._models.add(spec, estimate)
        replica_set = self._models.set_named(spec.id)
        # A copy can what its model can (offload, span), as at start.
        for model_id in replica_set.members if replica_set is not None else (spec.id,):
            if offloadable:
                self.warm.allow_offload(model_id)
            if spans:
                self._spanning.add(model_id)
        self._emit(EventKind.MODEL_ADDED, record, version=spec.version)

    def remove_model(self, name: str) -> None:
        """Forget a model (every copy) that holds nothing; ``ModelBusy`` while it is
        loaded or wanted."""
        copies = self.copies(name)
        model_id = self.model_id_of(name)
        for record in copies:
            if record.state not in (ModelState.UNLOADED, ModelState.FAILED) or record.waiters:
                raise ModelBusy(record.model_id, str(record.state), len(record.waiters))
        for record in copies:
            for waiter in self._preloads.take(record.model_id):
                error = PreloadSkipped(record.model_id, "the model was removed")
                self._effects.reject(waiter, error)
            self._replacements.pop(record.model_id, None)
            self.warm.forget(record.model_id)
        self._models.forget(model_id, copies)
        self._emit(EventKind.MODEL_REMOVED, None, model=model_id)

    # --- a config reload (``core/reload.py`` drives these) ---------------------------

    def retire(self, name: str, token: Any = None) -> Waiter:
        """Take a model out of service for good (a reload removed it): its aliases are
        free at once, new requests for it are ``UnknownModel``, waiting ones are refused,
        and it unloads once its leases are back. The waiter is answered when it holds
        nothing; ``remove_model`` then forgets it."""
        copies = self.copies(name)
        model_id = self.model_id_of(name)
        # The model's own id keeps naming its copies for the unload below and
        # ``remove_model``.
        self._models.retire(model_id, copies)
        in_service = self._models.in_service_ids()
        for record in copies:
            self._reject_all(record, UnknownModel(model_id, in_service))
            for waiter in self._preloads.take(record.model_id):
                error = PreloadSkipped(record.model_id, "the model was removed")
                self._effects.reject(waiter, error)
        return self.unload(model_id, token, reason="removed from the config")

    def update_models(self, specs: Iterable[ModelSpec]) -> None:
        """Take new metadata for models in place (tags, aliases, priority, ttl, pinned,
        defaults...): nothing unloads, leases go on. Aliases move in one step, so two
        models may trade one; a name another model holds is a ``ValueError`` before
        anything changes."""
        specs = list(specs)
        self._models.rename(specs)
        for spec in specs:
            replica_set = self._models.set_named(spec.id)
            if replica_set is None:
                record = self.resolve(spec.id)
                fields = _changed(record.spec, spec)
                _respec(record, spec)
            else:  # every copy takes its share of the model's new spec
                fields = _changed(replica_set.spec, spec)
                changed = self._models.respec_set(replica_set, spec)
                for number, member in enumerate(changed.members, start=1):
                    _respec(self._models[member], changed.member_spec(number))
                record = self._models[changed.members[0]]
            self._emit(EventKind.MODEL_CHANGED, record, fields=fields, reload=False)
        self._dispatch()  # an unpinned model, a new priority: waiting requests may go now

    def replace_model(
        self, spec: ModelSpec, estimate: Bytes, offloadable: bool = False, token: Any = None
    ) -> Waiter:
        """Serve ``spec.id`` with settings that need a fresh load (backend, options,
        memory, device): at once if it holds nothing, else once it has unloaded, after its
        leases are back. Requests meanwhile wait, and the new settings serve them. The
        waiter is answered when the new settings are in force."""
        if self.replica_set(spec.id) is not None:
            # Its copies were made from the old spec: a restart makes them anew.
            raise ValueError(f"model {spec.id!r} has replicas: its settings change by a restart")
        record = self.resolve(spec.id)
        self._replacements[record.model_id] = (spec, estimate, offloadable)
        if record.state in (ModelState.UNLOADED, ModelState.FAILED):
            self._apply_replacement(record)
        return self.unload(record.model_id, token, reason="its settings changed (reload)")

    def set_budgets(self, budgets: Mapping[DeviceId, Bytes]) -> None:
        """New configured budgets for known devices (a reload): a smaller one evicts
        idle models until the plan fits; a larger one lets waiting requests go."""
        for device, budget in budgets.items():
            self.ledger.set_budget(device, budget)
            self._memory_watch.configure(device, budget)
            self._emit(EventKind.BUDGET_CHANGED, None, device=device, new=int(budget))
            if self.ledger.account(device).over_budget:
                self._repair_over_budget(device)
        self._dispatch()

    def _apply_replacement(self, record: ModelRecord) -> None:
        """Put waiting new settings in force; ``record`` holds nothing now."""
        replacement = self._replacements.pop(record.model_id, None)
        if replacement is None:
            return
        spec, estimate, offloadable = replacement
        fields = _changed(record.spec, spec)
        if record.state is ModelState.FAILED:  # a failure of the old settings: try afresh
            record.set_state(ModelState.UNLOADED)
        record.failures, record.retry_at, record.last_error = 0, 0.0, None
        record.spec, record.estimate = spec, estimate
        record.candidate_cache = None
        if offloadable:
            self.warm.allow_offload(record.model_id)
        else:
            self.warm.forget(record.model_id)
        self._emit(EventKind.MODEL_CHANGED, record, fields=fields, reload=True)

    @property
    def waiting(self) -> int:
        return self._queue.count

    @property
    def stopping(self) -> bool:
        return self._stopping

    def spread_over(self, record: ModelRecord) -> int | tuple[DeviceId, ...] | None:
        """How many devices (or which) ``record`` spans: its ``devices``; else, for a
        model that can span and that no one device could ever hold, the fewest that
        could; None: one device."""
        spec = record.spec
        if spec.devices is not None:
            return spec.devices
        if spec.device != "auto" or record.model_id not in self._spanning:
            return None
        accounts = {d: self.ledger.account(d) for d in self.ledger.devices()}
        if any(a.fits_ever(record.estimate) for a in accounts.values()):
            return None
        for count in range(2, len(accounts) + 1):
            if spread(accounts, record.estimate, count) is not None:
                return count
        return None

    def devices_for(self, record: ModelRecord) -> list[DeviceId]:
        """The devices ``record`` may be placed on, in the config's order."""
        spec = record.spec
        if isinstance(spec.devices, tuple):
            return list(spec.devices)
        if spec.device != "auto" and spec.devices is None:
            return [spec.device]
        return self.ledger.devices()

    # --- requests -----------------------------------------------------------------

    def request(
        self,
        name: str,
        task_id: str | None = None,
        priority: int | None = None,
        token: Any = None,
        wants_lease: bool = True,
    ) -> Lease | Waiter:
        """Ask for a model: a ``Lease`` at once if a copy serves with room (of a model
        with replicas, the one with the fewest in flight), else a queued ``Waiter``;
        ``ModelQueueFull`` when the model's own ``max_queue`` requests already wait."""
        if self._stopping:
            raise PoolClosed("the pool is stopping; no new requests")
        record = self._models.in_service(name)
        copies = self.copies(name)
        now = self._clock()
        if priority is None:
            priority = record.spec.priority
        serving = any(c.serving for c in copies)
        if serving and not wants_lease:
            done = Waiter(next(self._ids), record.model_id, task_id, priority, now, token, False)
            self._effects.grant(done, None)  # an explicit load of a resident model: done
            return done
        chosen = self._pick(copies) if serving else None
        if chosen is not None:
            chosen.stats.record_request(now, hit=True)
            self._demand.note(chosen.spec.tags)
            lease = self._new_lease(chosen, task_id, priority, now, hit=True)
            replica_set = self._models.set_of(chosen.model_id)
            if replica_set is not None:
                self._grow(replica_set, now, {})  # one more in flight: busy enough for more?
            return lease
        holder = self._holder(copies, now)
        if not serving:
            self._check_ever_fits(holder)
            if holder.state is ModelState.FAILED:
                self._retry.check(holder, now, explicit=not wants_lease)
        self._check_model_queue(self._models.siblings(holder))  # a copy asked by id counts too
        if wants_lease:
            holder.stats.record_request(now, hit=serving)
            self._demand.note(holder.spec.tags)
        waiter = Waiter(
            next(self._ids), holder.model_id, task_id, priority, now, token, wants_lease
        )
        self._queue.push(holder, waiter)
        self._dispatch()
        return waiter

    def _pick(self, copies: list[ModelRecord]) -> ModelRecord | None:
        """The serving copy a request goes to now (fewest in flight, below the model's
        ``max_concurrent``); None when every one is full."""
        if len(copies) == 1:
            only = copies[0]
            limit = only.spec.max_concurrent
            return only if only.serving and (limit is None or len(only.leases) < limit) else None
        views = [ReplicaView(c.model_id, c.serving, False, len(c.leases)) for c in copies]
        chosen = pick(views, copies[0].spec.max_concurrent, self._rng)
        return None if chosen is None else self._models[chosen]

    def _holder(self, copies: list[ModelRecord], now: float) -> ModelRecord:
        """The copy a waiting request is queued on: one that serves (it waits for a free
        slot on any copy), else one that loads, else the one to load."""
        if len(copies) == 1:
            return copies[0]

        def rank(record: ModelRecord) -> int:
            state = record.state
            if state is ModelState.READY:
                return 0 if record.serving else 1
            if state is ModelState.LOADING:
                return 2
            if state is ModelState.WARM and not record.warm_dropping:
                return 3  # a restore is faster than a cold load
            if state is ModelState.UNLOADED:
                return 4
            if state is ModelState.FAILED and self._may_retry(record, now):
                return 5
            return 6  # leaving, or backing off after failures

        return min(copies, key=rank)  # the first of the best: ``id#1`` before ``id#2``

    def _may_retry(self, record: ModelRecord, now: float) -> bool:
        """A FAILED copy may load again without an explicit load: its backoff is over."""
        return now >= record.retry_at and record.failures < self._retry.max_failures

    def _check_model_queue(self, copies: list[ModelRecord]) -> None:
        """Refuse a request when its model's own queue (``max_queue``) is full; the
        pool's bound over every model is the queue's (``QueueFull``)."""
        limit = copies[0].spec.max_queue
        if limit is None or sum(len(c.waiters) for c in copies) < limit:
            return
        times = [t for c in copies for t in c.stats.response_times]
        turn = sum(times) / len(times) if times else None  # one answer frees a slot
        model_id = self.model_id_of(copies[0].model_id)
        raise ModelQueueFull(model_id, limit, turn)

    def release(self, lease: Lease, ok: bool = True, seconds: float | None = None) -> None:
        """A lease comes back. ``seconds`` defaults to how long it was held."""
        if lease.released:
            return
        lease.released = True
        record = self._models[lease.model_id]
        record.leases.pop(lease.lease_id, None)
        record.stats.current_tasks = len(record.leases)
        now = self._clock()
        record.stats.record_done(now, now - lease.granted_at if seconds is None else seconds, ok)
        if record.leases:
            if any(c.waiters for c in self._models.siblings(record)):
                self._dispatch()  # a slot came back (max_concurrent): a waiter may take it
            return
        if record.unload_requested is not None:
            self._moves.unload(record, record.unload_requested)
        if self._queue.count or record.draining:
            self._dispatch()

    def cancel(self, waiter: Waiter) -> bool:
        """The caller gave up (disconnected, cancelled). False if it was already answered."""
        return self._remove_waiter(waiter)

    def expire(self, waiter: Waiter) -> None:
        """The caller's wait ran out: answer it with the reason it was waiting."""
        if not self._remove_waiter(waiter):
            return
        record = self._models[waiter.model_id]
        waited = self._clock() - waiter.enqueued_at
        error: ModelPoolError
        if record.blocked_by and record.state in (
            ModelState.UNLOADED,
            ModelState.FAILED,
            ModelState.WARM,
        ):
            account = self.ledger.account(self.devices_for(record)[0])
            error = InsufficientMemory(
                record.model_id,
                account.device,
                record.estimate,
                max(0, account.planned_free),
                record.blocked_by,
            )
        else:
            copies = self._models.siblings(record)
            busy = any(c.serving for c in copies)  # it waited for a slot, not a load
            state = min((c.state for c in copies), key=_AVAILABILITY.index)
            shown = "serving, every copy at max_concurrent" if busy else str(state)
            error = WaitTimeout(self.model_id_of(record.model_id), waited, shown)
        self._effects.reject(waiter, error)
        self._emit(EventKind.REJECTED, record, error=str(error))

    def record_performance(self, name: str, response_time: float, success: bool) -> None:
        """Seed API: report a task's outcome that did not go through a lease."""
        record = self.resolve(name)
        record.stats.record_done(self._clock(), response_time, success)

    # --- explicit control ---------------------------------------------------------

    def load(self, name: str, token: Any = None) -> Waiter:
        """Load a model without leasing it; the waiter is answered with None when READY."""
        result = self.request(name, token=token, wants_lease=False)
        assert isinstance(result, Waiter)
        return result

    def preload(self, name: str, priority: int | None = None, token: Any = None) -> Waiter:
        """Load ``name`` when nothing else waits, only into room nobody needs (see
        ``core/preloads.py``). The waiter is answered with None once it is resident, or
        rejected with the reason it was skipped."""
        record = self._models.in_service(name)
        rank = record.spec.priority if priority is None else priority
        waiter = Waiter(
            next(self._ids), record.model_id, None, rank, self._clock(), token, wants_lease=False
        )
        if record.state is ModelState.READY:
            self._effects.grant(waiter, None)
            return waiter
        if record.state is ModelState.LOADING:
            self._queue.push(record, waiter)  # answered with the loads waiting for it
            return waiter
        self._check_ever_fits(record)
        self._preloads.push(waiter)
        self._dispatch()
        return waiter

    def unload(self, name: str, token: Any = None, reason: str = "requested") -> Waiter:
        """Unload a model (every copy of one with replicas) once its leases are back; the
        waiter is answered when it is gone."""
        copies = self.copies(name)
        waiter = Waiter(
            next(self._ids), copies[0].model_id, None, 0, self._clock(), token, wants_lease=False
        )
        # Each copy answers the waiter as it goes (``_answer_unload_waiters``): the last
        # one answers it; a copy that holds nothing needs no answer of its own.
        leaving = [c for c in copies if self._unload_one(c, waiter, reason)]
        if not leaving:
            self._effects.grant(waiter, None)
        return waiter

    def _unload_one(self, record: ModelRecord, waiter: Waiter, reason: str) -> bool:
        """Start unloading ``record`` for ``waiter``; False when it holds nothing (the
        waiter is not answered here, then)."""
        if record.state is ModelState.WARM:
            record.unload_waiters.append(waiter)
            if not record.warm_dropping:
                self._moves.drop(record, reason)
            return True
        if record.state is ModelState.FAILED:
            # Holds nothing; unloading it is a reset: the next request tries afresh.
            record.set_state(ModelState.UNLOADED)
            record.failures, record.retry_at = 0, 0.0
            self._emit(EventKind.UNLOADED, record, reason=reason)
        if record.state not in RESIDENT:
            return False
        record.unload_waiters.append(waiter)
        record.unload_requested = reason
        if record.state is ModelState.READY:
            record.draining = True
            if not record.leases:
                self._moves.unload(record, reason)
        return True

    def pin(self, name: str, pinned: bool = True) -> None:
        """Pin (or unpin) a model; of one with replicas, the ``min`` copies always wanted."""
        copies = self.copies(name)
        replica_set = self._models.set_named(name)
        kept = copies if replica_set is None else copies[: replica_set.settings.min]
        for record in copies:
            record.pinned = pinned and record in kept
        self._emit(EventKind.PINNED if pinned else EventKind.UNPINNED, copies[0])
        if not pinned:
            self._dispatch()

    def retune(self, settings: PoolSettings) -> None:
        """Take new settings among those read as the pool goes (watermarks, model caps,
        the reap interval); a raised cap may let waiting requests go now."""
        self.settings = settings
        self._dispatch()

    def set_ttl(self, name: str, ttl: float | None) -> None:
        """Unload ``name`` after ``ttl`` idle seconds from now on (None: never by idleness)."""
        if ttl is not None and not ttl > 0:
            raise ValueError(f"a ttl must be a positive number of seconds, got {ttl!r}")
        for record in self.copies(name):
            record.spec = record.spec.model_copy(update={"ttl": ttl})
        replica_set = self._models.set_named(name)
        if replica_set is not None:
            self._models.respec_set(replica_set, replica_set.spec.model_copy(update={"ttl": ttl}))

    def set_policy(self, policy: EvictionPolicy, **detail: Any) -> None:
        """Evict by ``policy`` from now on; ``detail`` (why) goes into the event."""
        old = self.policy.name
        self.policy = policy
        self._emit(EventKind.STRATEGY_CHANGED, None, old=old, new=policy.name, **detail)

    def stop(self, token: Any = None, force: bool = False) -> Waiter:
        """Refuse new requests, fail waiting ones, unload everything as leases return.

        With ``force``, models are unloaded even with leases out (after a drain timeout).
        The returned waiter is answered once nothing is loaded or loading.
        """
        self._stopping = True
        waiter = Waiter(next(self._ids), "", None, 0, self._clock(), token, wants_lease=False)
        self._stop_waiters.append(waiter)
        for pending in self._preloads.drain():
            self._effects.reject(pending, PoolClosed("the pool stopped before this preload"))
        for record in self._models.values():
            self._reject_all(record, PoolClosed("the pool stopped before serving this request"))
            if record.state is ModelState.LOADING and not record.load_started:
                # Still waiting for its victims to leave: give the reservation back, and
                # answer an unload that waited for the load (it holds nothing now).
                restore = record.warm is not None
                record.unload_requested = None
                self._bookings.abandon(record, ModelState.WARM if restore else ModelState.UNLOADED)
                self._answer_unload_waiters(record)
            if record.state is ModelState.WARM and not record.warm_dropping:
                self._moves.drop(record, "stopping")
            if record.state in RESIDENT:
                record.unload_requested = "stopping"
            if record.state is ModelState.READY and (force or not record.leases):
                for lease in record.leases.values():
                    lease.released = True
                record.leases.clear()
                self._moves.unload(record, "stopping")
        self._check_stopped()
        return waiter

    # --- reports from slow work ---------------------------------------------------

    def on_load_done(
        self, model_id: ModelId, handle: Handle | None, error: str | None, seconds: float
    ) -> None:
        record = self._models[model_id]
        device = record.device
        assert device is not None
        devices = record.devices
        assert record.state is ModelState.LOADING
        now = self._clock()
        restored = record.warm is not None
        if restored:  # the host copy is gone either way: moved back, or freed on failure
            self.warm.release(record)
            record.warm = None
            self._moves.start_ready_offloads()
        if handle is None:
            record.unload_requested = None
            self._bookings.abandon(record, ModelState.FAILED)
            record.last_error = error or "unknown error"
            record.stats.load_failures += 1
            self._count_failure(record, now)
            self._emit(EventKind.LOAD_FAILED, record, error=record.last_error, seconds=seconds)
            self._reject_all(record, LoadFailed(model_id, record.last_error))
            self._answer_unload_waiters(record)
            self._settle()
            return
        actual = handle.footprint if handle.footprint is not None else record.estimate
        self._bookings.commit(record, actual)
        record.estimate = actual  # the next load reserves what this one measured
        record.handle = handle
        record.last_error = None
        record.failures = 0
        record.blocked_by = []
        if restored:
            record.stats.record_restore(now, seconds)
        else:
            record.stats.record_load(now, seconds)
        self._emit(
            EventKind.LOADED,
            record,
            device=device,
            bytes=actual,
            seconds=seconds,
            restored=restored,
        )
        if record.unload_requested is not None:
            # Explicit loads asked before the unload are done: the model did load. Requests
            # for leases stay queued and load it again once it is gone.
            for waiter in [w for w in record.waiters if not w.wants_lease]:
                self._queue.remove(record, waiter)
                self._effects.grant(waiter, None)
            record.draining = True
            self._moves.unload(record, record.unload_requested)
            return
        for part in devices:
            if self.ledger.account(part).over_budget:
                self._repair_over_budget(part)
        self._settle()

    def on_lost(self, model_id: ModelId, handle: Handle, reason: str) -> None:
        """A resident model stopped on its own (its process exited): FAILED, memory freed.

        Leases on it end here; their holders see the failure from the dead endpoint.
        A report about a WARM model's warm handle (a sleeping server that exited) drops
        its copy. A report about a handle that is no longer the model's current one is
        stale.
        """
        record = self._models[model_id]
        if record.state is ModelState.WARM and record.warm is handle and not record.warm_dropping:
            self._lose_warm(record, reason)
            return
        if record.state is not ModelState.READY or record.handle is not handle:
            return
        device, devices = record.device, record.devices
        assert device is not None
        record.draining = False
        record.unload_requested = None
        self._bookings.release(record, ModelState.FAILED)
        for lease in record.leases.values():
            lease.released = True
        record.leases.clear()
        record.stats.current_tasks = 0
        record.last_error = reason
        self._count_failure(record, self._clock())
        self._emit(EventKind.LOST, record, device=device, reason=reason)
        self._answer_unload_waiters(record)
        self._settle(freed=devices)

    def _lose_warm(self, record: ModelRecord, reason: str) -> None:
        """A warm copy vanished on its own (a sleeping server process exited): its host
        bytes are free, the model UNLOADED with the reason kept; the next request loads
        it cold."""
        self.warm.leave(record)
        self.warm.release(record)
        record.warm = None
        record.unload_requested = None
        record.set_state(ModelState.UNLOADED)
        record.last_error = reason
        self._emit(EventKind.LOST, record, device=HOST, reason=reason)
        self._answer_unload_waiters(record)
        self._settle(host_freed=True)

    def on_unload_done(self, model_id: ModelId, error: str | None = None) -> None:
        record = self._models[model_id]
        if record.state is ModelState.WARM:
            self._on_drop_done(record, error)
            return
        device, devices = record.device, record.devices
        assert device is not None
        assert record.state is ModelState.UNLOADING
        # The backend's unload returned; even when it reported an error we release the
        # bytes, since keeping them booked would block the device for good. Backends that
        # can verify (process exit, probe) do so before reporting.
        record.draining = False
        record.unload_requested = None
        record.preloaded = None
        self._bookings.release(record, ModelState.UNLOADED if error is None else ModelState.FAILED)
        record.stats.unload_count += 1
        if error is None:
            self._emit(EventKind.UNLOADED, record, device=device)
        else:
            record.last_error = f"unload failed: {error}"
            self._emit(EventKind.UNLOAD_FAILED, record, device=device, error=error)
        self._answer_unload_waiters(record)
        self._settle(freed=devices)

    def on_offload_done(
        self, model_id: ModelId, warm: Handle | None, error: str | None, seconds: float
    ) -> None:
        """The weights reached host RAM (``warm``), or the offload failed (``error``)."""
        record = self._models[model_id]
        assert record.state is ModelState.UNLOADING
        assert record.offloading
        record.offloading = False
        if warm is None:
            # The model is still on its device: unload it the ordinary way instead.
            self.warm.cancel(record)
            self._emit(EventKind.OFFLOAD_FAILED, record, device=record.device, error=error)
            self._moves.start_ready_offloads()
            assert record.handle is not None
            self._effects.start_unload(record.handle, self._moves.booked(record))
            return
        device = record.device
        assert device is not None
        size = warm.footprint if warm.footprint is not None else self.warm.size_of(record)
        record.draining = False
        self._bookings.release(record, ModelState.WARM)
        self.warm.commit(record, size or record.estimate)
        record.warm = warm
        record.stats.offload_count += 1
        self._emit(EventKind.OFFLOADED, record, device=device, bytes=size, seconds=seconds)
        devices = (device,)  # a model spread over several devices is never offloaded
        reason, record.unload_requested = record.unload_requested, None
        if self._stopping or reason is not None:
            self._moves.drop(record, reason or "stopping")
        self._settle(freed=devices)

    def _on_drop_done(self, record: ModelRecord, error: str | None) -> None:
        assert record.warm_dropping
        self.warm.release(record)
        record.warm = None
        record.warm_dropping = False
        reason, record.unload_requested = record.unload_requested, None
        record.set_state(ModelState.UNLOADED)
        self._emit(EventKind.WARM_DROPPED, record, reason=reason, error=error)
        self._answer_unload_waiters(record)
        self._settle(host_freed=True)

    def on_tick(self) -> None:
        """Periodic: unload models idle past their TTL, re-check starving waits."""
        now = self._clock()
        for record in self._models.values():
            ttl = record.spec.ttl
            if (
                ttl is not None
                and record.state is ModelState.READY
                and not record.leases
                and not record.pinned
                and not record.waiters
                and now - record.stats.last_used >= ttl
            ):
                self._moves.unload(record, f"idle for {ttl:g}s (ttl)")
        for replica_set in self._models.replica_sets():
            self._shrink(replica_set, now)
        if self.settings.high_watermark is not None:
            self._unload_ahead_of_need(now)
        if self._queue.count or self._models.replica_sets():
            self._dispatch()  # with replicas: a copy to replace may be past its backoff

    def _shrink(self, replica_set: ReplicaSet, now: float) -> None:
        """Unload the extra copies (above ``min``) idle past the model's ``ttl``, or
        ``EXTRA_IDLE_SECONDS`` when it has none."""
        ttl = replica_set.spec.ttl
        idle_after = EXTRA_IDLE_SECONDS if ttl is None else ttl
        copies = [self._models[member] for member in replica_set.members]
        views = [self._view(c, now) for c in copies]
        for member in spare(views, replica_set.settings, idle_after):
            record = self._models[member]
            if not record.pinned:
                self._moves.unload(record, f"idle extra copy for {idle_after:g}s (ttl)")

    def _unload_ahead_of_need(self, now: float) -> None:
        high, low = self.settings.high_watermark, self.settings.low_watermark_in_force
        assert high is not None
        demand = self.demand()
        for account in self.ledger:
            residents = self.residents(account.device)
            for record in above_high_watermark(
                account, residents, self.policy, now, demand, high, low
            ):
                reason = f"above the high watermark on {account.device} ({high:.0%})"
                self._evict(record, reason)

    def on_memory_reading(self, reading: MemoryReading) -> None:
        """Periodic: the probe's view of a device. Others' use shrinks the usable
        budget (evicting idle models if the plan no longer fits); drift is reported."""
        account = self.ledger.account(reading.device)
        verdict = self._memory_watch.observe(reading, account)
        if verdict.budget is not None:
            old = account.budget
            self.ledger.set_budget(reading.device, verdict.budget)
            self._emit(
                EventKind.BUDGET_CHANGED, None, device=reading.device, old=old,
                new=verdict.budget, others=verdict.others,
            )  # fmt: skip
            if account.over_budget:
                self._repair_over_budget(reading.device)
            elif verdict.budget > old and self._queue.count:
                self._dispatch()
        if verdict.drift is not None:
            self._emit(
                EventKind.MEMORY_DRIFT, None, device=reading.device, drift=verdict.drift,
                ledger=verdict.ours, observed=reading.used, others=verdict.others,
            )  # fmt: skip

    # --- status -------------------------------------------------------------------

    def demand(self) -> dict[str, float]:
        """Share of recent requests per tag, for the specialization policy."""
        return self._demand.shares()

    def best_model_for_task(self, task_type: str) -> ModelId | None:
        """Seed API: the model best suited to ``task_type``, weighted by its health."""
        return best_model_for_task(self._models.values(), task_type)

    # --- internals ----------------------------------------------------------------

    def _new_lease(
        self, record: ModelRecord, task_id: str | None, priority: int, now: float, hit: bool
    ) -> Lease:
        assert record.handle is not None
        assert record.device is not None
        lease = Lease(
            next(self._ids),
            record.model_id,
            task_id,
            priority,
            record.device,
            record.handle,
            now,
            hit,
        )
        record.leases[lease.lease_id] = lease
        record.preloaded = None  # a request used it: it is traffic's now, not speculation
        record.stats.current_tasks = len(record.leases)
        record.stats.last_used = now
        return lease

    def _check_ever_fits(self, record: ModelRecord) -> None:
        devices = self.devices_for(record)
        if not devices:
            raise DoesNotFit(record.model_id, "any device", record.estimate, 0)
        spec, spread_over = record.spec, self.spread_over(record)
        if isinstance(spread_over, tuple):  # each device must hold its part
            parts = shares(record.estimate, spec.split or [1.0] * len(devices))
            for device, part in zip(devices, parts, strict=True):
                self.ledger.check_fits(record.model_id, device, part)
            return
        if isinstance(spread_over, int):
            accounts = {d: self.ledger.account(d) for d in devices}
            if spread(accounts, record.estimate, spread_over) is None:
                room = sum(sorted((a.budget for a in accounts.values()), reverse=True)[
                    : spread_over])  # fmt: skip
                where = f"any {spread_over} devices"
                raise DoesNotFit(record.model_id, where, record.estimate, room)
            return
        fits = [d for d in devices if self.ledger.account(d).fits_ever(record.estimate)]
        if not fits:
            self.ledger.check_fits(record.model_id, devices[0], record.estimate)

    def _count_failure(self, record: ModelRecord, now: float) -> None:
        if self._retry.count_failure(record, now):
            self._emit(EventKind.CIRCUIT_OPEN, record, failures=record.failures)

    def _remove_waiter(self, waiter: Waiter) -> bool:
        if self._preloads.remove(waiter):
            return True
        record = self._models.get(waiter.model_id)
        return record is not None and self._queue.remove(record, waiter)

    def _emit(self, kind: EventKind, record: ModelRecord | None, **detail: Any) -> None:
        model_id = record.model_id if record is not None else None
        self._effects.emit(PoolEvent(kind, model_id, self._clock(), detail))

    def _evict(self, record: ModelRecord, reason: str, keep: ModelRecord | None = None) -> None:
        """Unload ``record``, or send it to the warm tier; ``keep`` (the model the room
        is made for) keeps its own warm copy."""
        if self._stopping:
            self._moves.evict(record, reason, None)
            return
        policy, now, demand = self.policy, self._clock(), self.demand()

        def make_room(size: Bytes) -> list[ModelRecord] | None:
            return self.warm.make_room(size, policy, now, demand, keep)

        self._moves.evict(record, reason, make_room)

    def _begin_load(self, record: ModelRecord, plan: Go) -> None:
        for victim in plan.victims:
            reason = f"evicted by {self.policy.name} for {record.model_id}"
            self._evict(victim, reason, keep=record)
        record.blocked_by = []
        self._moves.load(record, plan.placement, plan.why)

    def _settle(self, freed: Iterable[DeviceId] = (), host_freed: bool = False) -> None:
        """The end of every report from slow work, in one order: start the moves that
        waited for the memory just freed (on the ``freed`` devices, or host RAM), answer
        a stop that is now complete, then serve and plan what waits."""
        if host_freed:
            self._moves.start_ready_offloads()
        for device in freed:
            self._moves.start_ready_loads(device)
        self._check_stopped()
        self._dispatch()

    def _answer_unload_waiters(self, record: ModelRecord) -> None:
        # It holds nothing now: new settings that waited for that take over first, so
        # that the requests served next load them.
        self._apply_replacement(record)
        waiters, record.unload_waiters = record.unload_waiters, []
        siblings = self._models.siblings(record)
        for waiter in waiters:
            if len(siblings) > 1 and any(waiter in c.unload_waiters for c in siblings):
                continue  # an unload of the whole model: another copy is still leaving
            self._effects.grant(waiter, None)

    def _check_stopped(self) -> None:
        if not self._stopping or not self._stop_waiters:
            return
        if any(r.state in RESIDENT or r.warm is not None for r in self._models.values()):
            return
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            self._effects.grant(waiter, None)

    def residents(self, device: DeviceId) -> Mapping[ModelId, ModelRecord]:
        """Models booked on ``device`` (loading, ready or unloading), by id."""
        return self._bookings.residents(device)

    def _repair_over_budget(self, device: DeviceId) -> None:
        """A load measured bigger than reserved: evict idle models until the plan fits."""
        account = self.ledger.account(device)
        now = self._clock()
        idle = [
            r
            for r in self.residents(device).values()
            if r.state is ModelState.READY and not r.leases and not r.pinned
            and not r.spec.remote  # books nothing: its leaving frees nothing
        ]  # fmt: skip
        for model_id in self.policy.victims(
            [r.candidate() for r in idle],
            EvictionContext(need=account.over_budget, now=now, demand=self.demand()),
        ):
            if not account.over_budget:
                break
            record = self._models[model_id]
            self._evict(record, f"over budget on {device}")
        if account.over_budget:
            self._emit(EventKind.OVER_BUDGET, None, device=device, bytes=account.over_budget)

    def _dispatch(self) -> None:
        # Effects may call back into the scheduler synchronously (a recording fake, a
        # grant whose caller already left); finish this pass, then run another.
        if self._dispatching:
            self._dispatch_again = True
            return
        self._dispatching = True
        try:
            self._dispatch_again = True
            while self._dispatch_again:
                self._dispatch_again = False
                self._dispatch_once()
        finally:
            self._dispatching = False

    def _dispatch_once(self) -> None:
        if self._stopping:
            return
        now = self._clock()
        # Serve what is resident first: those leases also keep it from being a victim below.
        for record in self._models.values():
            if record.waiters:
                self._serve_queue(record, now)
        queued = self._queue.in_order(self._models.values())
        drain: set[ModelId] = set()
        held_for: dict[DeviceId, ModelRecord] = {}  # a starving plan waits here: no backfill
        demand: dict[str, float] | None = None
        for record in queued:
            if record.state not in (ModelState.UNLOADED, ModelState.FAILED, ModelState.WARM):
                continue
            if record.warm_dropping:
                continue  # its copy is being freed: a cold load follows, once it is gone
            if demand is None:
                demand = self.demand()
            starving = self._queue.waited(record, now) >= self.settings.starvation_limit
            outcome = self._plan(record, now, demand, held_for)
            if isinstance(outcome, Go):
                self._begin_load(record, outcome)
            elif isinstance(outcome, Wait):
                if not record.blocked_by:
                    held = ", ".join(str(h) for h in outcome.holders)
                    self._emit(
                        EventKind.WAITING_FOR_MEMORY, record, device=outcome.device, held_by=held
                    )
                record.blocked_by = outcome.holders
                if starving:
                    for device in outcome.hold or (outcome.device,):
                        held_for.setdefault(device, record)
                    chosen = choose_drain(outcome, self.policy, now, demand)
                    drain.update(r.model_id for r in chosen)
            elif isinstance(outcome, Impossible):
                self._reject_all(record, outcome.error)
        if self._set_draining(drain):
            self._dispatch_again = True  # a model serves again: grant its queue
        for replica_set in self._models.replica_sets():
            self._grow(replica_set, now, held_for)
        if self._preloads and not self._queue.count:
            self._start_preloads(now)

    def _grow(
        self, replica_set: ReplicaSet, now: float, held_for: Mapping[DeviceId, ModelRecord]
    ) -> None:
        """Start one more copy of a model with replicas when ``wants_another`` says so and
        the plan for it evicts only models with less recent demand than this one."""
        copies = [self._models[member] for member in replica_set.members]
        views = [self._view(c, now) for c in copies]
        why = wants_another(views, replica_set.settings)
        if why is None:
            return
        spares = [
            c
            for c in copies
            if c.state is ModelState.UNLOADED
            or (c.state is ModelState.WARM and not c.warm_dropping)
            or (c.state is ModelState.FAILED and self._may_retry(c, now))
        ]
        if not spares:
            return
        record = min(spares, key=lambda c: c.state is not ModelState.WARM)  # a restore first
        plan = self._plan(record, now, self.demand(), held_for)
        if not isinstance(plan, Go):
            return
        if any(self._models.set_of(v.model_id) is replica_set for v in plan.victims):
            return  # a copy for a copy: no gain
        own = sum(c.stats.frequency(now) for c in copies)
        if not outweighs(own, [v.stats.frequency(now) for v in plan.victims]):
            return
        self._emit(
            EventKind.REPLICA_STARTED, record, model=replica_set.model_id, reason=why,
            victims=[v.model_id for v in plan.victims],
        )  # fmt: skip
        self._begin_load(record, plan)

    @staticmethod
    def _view(record: ModelRecord, now: float) -> ReplicaView:
        idle = 0.0 if record.leases else max(0.0, now - record.stats.last_used)
        loading = record.state is ModelState.LOADING
        return ReplicaView(
            record.model_id, record.serving, loading, len(record.leases), idle, len(record.waiters)
        )

    def _start_preloads(self, now: float) -> None:
        """Start the waiting preloads that fit, most important first: only while no
        request waits, and only into room nobody needs."""
        demand = self.demand()
        deferred: list[Waiter] = []
        while self._preloads and not self._queue.count:
            waiter = self._preloads.pop()
            record = self._models.get(waiter.model_id)
            if record is None:
                continue  # forgotten meanwhile (its waiter was answered then)
            if record.state in (ModelState.LOADING, ModelState.READY):
                self._effects.grant(waiter, None)
                continue
            if record.state is ModelState.UNLOADING or record.warm_dropping:
                deferred.append(waiter)  # try again once it has settled
                continue
            plan = self._plan(record, now, demand, {})
            reason: str | None
            if isinstance(plan, Go):
                ranks = {v.model_id: v.preloaded for v in plan.victims}
                reason = preload_refusal(plan, waiter.priority, ranks)
            elif isinstance(plan, Wait):
                reason = "no room now: " + ", ".join(str(h) for h in plan.holders)
            else:
                reason = str(plan.error)
            if reason is not None:
                self._emit(EventKind.PRELOAD_SKIPPED, record, reason=reason)
                self._effects.reject(waiter, PreloadSkipped(record.model_id, reason))
                continue
            assert isinstance(plan, Go)
            record.preloaded = waiter.priority
            self._queue.push(record, waiter)  # answered when READY, as an explicit load
            self._begin_load(record, plan)
        for waiter in deferred:
            self._preloads.push(waiter)

    def plan(self, record: ModelRecord, now: float) -> Plan:
        """Where ``record`` would go now and what would leave first (a query: nothing
        changes)."""
        return self._plan(record, now, self.demand(), {})

    def _plan(
        self,
        record: ModelRecord,
        now: float,
        demand: Mapping[str, float],
        held_for: Mapping[DeviceId, ModelRecord],
    ) -> Plan:
        """Where ``record`` goes and what leaves first (``core.placement`` chooses)."""
        group = record.spec.group
        members = None
        if group is not None and self._bookings.group_scope == "box":
            members = [r for r in self._models.values() if r.spec.group == group and r.devices]

        def plan_on(account: DeviceAccount, need: Bytes) -> Plan:
            device = account.device
            if device in held_for:
                starving = held_for[device]
                why = f"held for {starving.model_id}, which has waited longest"
                held = Holder(starving.model_id, starving.estimate, why)
                return Wait(device, [held], [], need)
            residents = self.residents(device)
            plan = plan_load(record, account, residents, self.policy, now, demand, need, members)
            caps = self._caps(device)
            if caps and isinstance(plan, Go):
                plan = within_caps(record, plan, caps, self.policy, now, demand)
            return plan

        accounts = [self.ledger.account(d) for d in self.devices_for(record)]
        count = self.spread_over(record)
        if count is None:
            if self.settings.placement != "cost":
                place = PLACEMENTS[self.settings.placement]
                return place(accounts, record.estimate, plan_on, self.policy, now)
            others = [r for r in self._models.siblings(record) if r is not record]
            siblings = {d for r in others for d in r.devices}
            return place_one(accounts, record.estimate, plan_on, self.policy, now, siblings)
        fixed = isinstance(count, tuple)
        count = len(count) if isinstance(count, tuple) else count
        split = record.spec.split
        return place_across(
            accounts, record.estimate, count, split, plan_on, self.policy, now, fixed=fixed
        )

    def _caps(self, device: DeviceId) -> list[Cap]:
        """The count limits a load on ``device`` must stay within (usually none)."""
        caps: list[Cap] = []
        limit = self.settings.device_max_models.get(device)
        if limit is not None:
            loaded = [r for r in self.residents(device).values() if counts_toward(r)]
            caps.append(Cap(device, limit, loaded))
        if self.settings.max_models is not None:
            loaded = [r for r in self._models.values() if counts_toward(r)]
            caps.append(Cap("the pool", self.settings.max_models, loaded))
        return caps

    def _set_draining(self, drain: set[ModelId]) -> bool:
        """Drain exactly ``drain``; True if a model stopped draining while requests wait."""
        resumed = False
        for model_id in self._draining - drain:
            record = self._models[model_id]
            if record.unload_requested is None:
                record.draining = False
                resumed = resumed or bool(record.waiters)
        for model_id in drain - self._draining:
            record = self._models[model_id]
            record.draining = True
            self._emit(EventKind.DRAINING, record, leases=len(record.leases))
        self._draining = drain
        return resumed

    def _serve_queue(self, record: ModelRecord, now: float) -> None:
        """Grant ``record``'s waiters from the copies that serve, in arrival order, while
        one has room (``max_concurrent``); the rest keep their place."""
        copies = self._models.siblings(record)
        if not any(c.serving for c in copies):
            return
        kept: deque[Waiter] = deque()
        for waiter in self._queue.take_all(record):
            if not waiter.wants_lease:
                self._effects.grant(waiter, None)
                continue
            chosen = self._pick(copies)
            if chosen is None:
                kept.append(waiter)
                continue
            lease = self._new_lease(chosen, waiter.task_id, waiter.priority, now, False)
            self._effects.grant(waiter, lease)
        self._queue.put_back(record, kept)

    def _reject_all(self, record: ModelRecord, error: ModelPoolError) -> None:
        if not record.waiters:
            return
        waiters = self._queue.take_all(record)
        for waiter in waiters:
            self._effects.reject(waiter, error)
        self._emit(EventKind.REJECTED, record, error=str(error), requests=len(waiters))


def _changed(old: ModelSpec, new: ModelSpec) -> list[str]:
    """The settings ``new`` changes, by name."""
    return [name for name in type(new).model_fields if getattr(new, name) != getattr(old, name)]


def _respec(record: ModelRecord, spec: ModelSpec) -> None:
    """``record`` takes new metadata in place (its pin follows a changed ``pinned``)."""
    if spec.pinned != record.spec.pinned:
        record.pinned = spec.pinned
    record.spec = spec
    record.candidate_cache = None  # its priority and tags are part of it
