"""RolloutManager: a model's versions, the traffic between them, and safe switches.

It is the pool's ``Traffic``: every request for a model with versions is routed here,
and every lease that comes back is recorded in the ``HealthMonitor``. It runs on the
pool's loop and owns its state the way the scheduler owns the pool's: handlers that
do not await, slow work (loading the versions, unloading the one left behind) in
tasks that report back, time from the injected clock.

A switch (``switch_model``) is checked first (``validate_switch_request``: every
problem at once) and refused before any traffic moves. It then loads the source and
the target and pins both, so neither is evicted while they share traffic; memory for
the target is taken by the pool's policy, and a target that cannot load or fit fails
the operation with nothing moved. Each step of the plan changes the split; a guarded
plan goes back to the source as soon as the target turns critical. Whatever version
is left behind is unloaded once its in-flight requests are done.

Versions registered at run time, the split, and the operations are written to
``<state_dir>/rollouts.json`` after every change. An operation found running at start
was interrupted: it ends ``aborted`` and its model's traffic goes back to its source.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpool.config import Config, merged_thresholds
from modelpool.config.versions import version_spec
from modelpool.core.events import EventKind
from modelpool.core.pool import ModelPool
from modelpool.errors import (
    ModelPoolError,
    StateError,
    SwitchRefused,
    UnknownModel,
    UnknownOperation,
)
from modelpool.monitor.health import Alert, HealthMonitor, Thresholds
from modelpool.rollout.decisions import (
    Hold,
    Move,
    Promote,
    Revert,
    RollBack,
    Stay,
    StepUp,
    interrupted,
    next_move,
    rolls_back_on,
    step_to,
    switch_problems,
    to_forget,
    to_roll_back,
    unregister_problems,
    why_critical,
)
from modelpool.rollout.operation import Operation, Status, wall_time
from modelpool.rollout.registry import VersionInfo, VersionRegistry
from modelpool.rollout.rollouts_file import STATE_FILE, RolloutsFile
from modelpool.rollout.routing import Weights, split
from modelpool.rollout.strategies import Strategy, make_plan, parse_strategy

log = logging.getLogger("modelpool.rollout")


@dataclass(frozen=True)
class SwitchResult:
    """What ``switch_model`` answers (seed 003): started, or refused with every reason."""

    success: bool
    operation_id: str | None
    status: str | None
    errors: list[str] = field(default_factory=list)


class RolloutManager:
    """Versions, routing and rollouts for the models of one pool."""

    def __init__(
        self,
        pool: ModelPool,
        *,
        health: HealthMonitor | None = None,
        state_dir: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        interval: float | None = 1.0,
        max_operations: int = 200,
    ) -> None:
        self._pool = pool
        self.health = health if health is not None else HealthMonitor(clock)
        self._clock, self._wall = clock, wall
        self._rng = rng if rng is not None else random.Random()
        self._interval = interval
        self._max_operations = max_operations
        self._file = RolloutsFile(state_dir) if state_dir is not None else None
        self.save_error: str | None = None
        self.registry = VersionRegistry(pool, self._rng)
        self._operations: dict[str, Operation] = {}  # oldest first
        self._active: dict[str, Operation] = {}  # model -> its pending or running operation
        self._holds: dict[str, bool] = {}  # record pinned for an operation -> was it pinned
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_config(cls, pool: ModelPool, config: Config, **overrides: Any) -> RolloutManager:
        settings = config.health
        defaults = Thresholds(**settings.thresholds.model_dump())
        clock = overrides.pop("clock", time.monotonic)
        health = HealthMonitor(clock, settings.window, defaults)
        for spec in config.models.values():
            if spec.thresholds is not None:
                merged = merged_thresholds(settings.thresholds, spec.thresholds)
                health.set_thresholds(spec.id, Thresholds(**merged))
        kwargs: dict[str, Any] = {
            "health": health,
            "state_dir": Path(config.pool.state_dir).expanduser(),
            "clock": clock,
            "interval": settings.interval,
            "max_operations": settings.max_operations,
        }
        kwargs.update(overrides)
        return cls(pool, **kwargs)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Read the state file, route the pool's traffic here, start the watch."""
        self._changed = asyncio.Event()
        self._restore()
        self._pool.set_traffic(self)
        self.health.add_handler(self._on_alert)
        if self._interval is not None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    async def stop(self) -> None:
        """Stop watching; operations stay as they are in the state file."""
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.set_traffic(None)

    async def settle(self) -> None:
        """Until the work started so far (loads, unloads of versions left behind) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _tick(self) -> None:
        self.tick()
        assert self._interval is not None
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def tick(self) -> None:
        """Judge health as time has passed and take the steps that are due."""
        self.health.check()
        now = self._clock()
        for op in list(self._active.values()):
            if op.status is Status.RUNNING:
                self._carry_out(op, next_move(op, self.health.level(op.model, op.target), now))

    # --- Traffic (the pool calls these) ---------------------------------------------

    def route(self, name: str, key: str | None) -> str:
        return self.registry.route(name, key)

    def record(self, model_id: str, seconds: float, ok: bool) -> None:
        try:
            spec = self._pool.spec(model_id)
        except UnknownModel:
            return  # forgotten while the request ran
        self.health.record(spec.base_id, spec.version, max(0.0, seconds), ok)

    # --- versions ---------------------------------------------------------------------

    def versions(self, model: str) -> list[dict[str, Any]]:
        """Every version of ``model`` with its metadata, state and share of traffic."""
        base = self._base(model)
        active = self._active.get(base)
        return self.registry.listing(base, (active.source, active.target) if active else ())

    def describe(self, model: str) -> dict[str, Any]:
        """``model``'s versions, split and running rollout, as ``/admin`` shows them."""
        base = self._base(model)
        active = self._active.get(base)
        return {
            "model": base,
            "serving": self.serving_version(base),
            "weights": dict(self.weights(base)),
            "versions": self.versions(base),
            "rollout": active.summary() if active is not None else None,
        }

    def models_with_versions(self) -> list[str]:
        """The models that have more than one version."""
        return self.registry.with_versions()

    def weights(self, model: str) -> Weights:
        """``model``'s split now: (version, share) pairs, target first."""
        return self.registry.weights(self._base(model))

    def register_version(
        self,
        model: str,
        version: str,
        settings: Mapping[str, Any] | None = None,
        *,
        author: str | None = None,
        notes: str | None = None,
    ) -> dict[str, Any]:
        """Add ``version`` of ``model``: the model's settings with ``settings`` over them
        (backend options, memory, defaults...). ``ConfigError`` names what is wrong."""
        base = self._base(model)
        if version in self.registry.versions[base]:
            raise SwitchRefused(base, [f"version {version!r} is already registered"])
        entry = {**(settings or {}), "author": author, "notes": notes}
        spec = version_spec(self._pool.spec(base), version, entry)
        info = VersionInfo(
            base, version, spec.id, "runtime", author, notes, wall_time(self._wall()),
            dict(settings or {}),
        )  # fmt: skip
        self.registry.add(info, spec)
        self._pool.publish(EventKind.VERSION_REGISTERED, spec.id, version=version)
        self._save()
        return next(v for v in self.versions(base) if v["version"] == version)

    async def unregister_version(self, model: str, version: str) -> None:
        """Forget a version registered at run time that carries no traffic; it is
        unloaded first, after its in-flight requests."""
        base = self._base(model)
        info = self.registry.info(base, version)
        share = dict(self.weights(base)).get(version, 0.0)
        problems = unregister_problems(version, info.origin, share, self._active.get(base))
        if problems:
            raise SwitchRefused(base, problems)
        await self._pool.unload(info.record)
        self.registry.remove(base, version)
        self._pool.publish(EventKind.VERSION_UNREGISTERED, None, model=base, version=version)
        self._save()

    # --- switching --------------------------------------------------------------------

    def validate_switch_request(
        self,
        model_id: str,
        target_version: str,
        strategy: str | Strategy = Strategy.IMMEDIATE,
        strategy_config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Seed 003: ``{"valid": bool, "errors": [...]}`` with every problem found."""
        try:
            base = self._base(model_id)
        except UnknownModel as error:
            return {"valid": False, "errors": [str(error)]}
        errors = switch_problems(
            base,
            target_version,
            strategy,
            strategy_config,
            records={v: info.record for v, info in self.registry.versions[base].items()},
            serving=self.serving_version(base),
            active=self._active.get(base),
            pool=self._pool,
        )
        return {"valid": not errors, "errors": errors}

    def serving_version(self, model: str) -> str:
        """The version with the largest share (the one all traffic is on between rollouts)."""
        return self.registry.serving(self._base(model))

    async def switch_model(
        self,
        model_id: str,
        target_version: str,
        strategy_type: str | Strategy = Strategy.IMMEDIATE,
        strategy_config: Mapping[str, Any] | None = None,
    ) -> SwitchResult:
        """Start moving ``model_id``'s traffic to ``target_version`` (seed 003).

        Returns once the operation has started (it is ``pending`` while the versions
        load); ``success=False`` with ``errors`` when it was refused.
        """
        check = self.validate_switch_request(
            model_id, target_version, strategy_type, strategy_config
        )
        if not check["valid"]:
            return SwitchResult(False, None, None, check["errors"])
        base = self._base(model_id)
        strategy = parse_strategy(strategy_type)
        settings = dict(strategy_config or {})
        op = Operation(
            id=f"op-{self._rng.getrandbits(48):012x}",
            model=base,
            source=self.serving_version(base),
            target=target_version,
            strategy=strategy,
            settings=settings,
            plan=make_plan(strategy, settings),
            created=self._wall(),
        )
        self._operations[op.id] = op
        self._active[base] = op
        self._trim_history()
        self._changed_op(op, f"{strategy} switch from {op.source} to {op.target} asked")
        self._spawn(self._prepare(op))
        return SwitchResult(True, op.id, str(op.status))

    def get_switch_status(self, operation_id: str) -> dict[str, Any]:
        """Seed 003: status, progress, steps and history of one operation."""
        op = self._operations.get(operation_id)
        if op is None:
            raise UnknownOperation(operation_id)
        return op.to_dict()

    def operations(self, model: str | None = None) -> list[dict[str, Any]]:
        """Summaries of the operations kept, newest first (of ``model`` if given)."""
        base = self._base(model) if model is not None else None
        return [
            op.summary()
            for op in reversed(self._operations.values())
            if base is None or op.model == base
        ]

    async def wait(self, operation_id: str, *statuses: Status) -> dict[str, Any]:
        """Until the operation has one of ``statuses`` (default: it has ended)."""
        assert self._changed is not None, "start() the manager first"
        while True:
            status = self.get_switch_status(operation_id)
            op = self._operations[operation_id]
            if op.status in statuses or (not statuses and op.ended):
                return status
            await self._changed.wait()

    def abort(self, operation_id: str) -> dict[str, Any]:
        """Stop an operation; traffic goes back to its source at once."""
        op = self._operations.get(operation_id)
        if op is None:
            raise UnknownOperation(operation_id)
        if op.ended:
            raise SwitchRefused(op.model, [f"operation {op.id} has already ended ({op.status})"])
        self._back_to_source(op, Status.ABORTED, "aborted by an operator")
        return op.to_dict()

    async def rollback(self, model_id: str) -> dict[str, Any]:
        """Back to the previous version: ends the running rollout of ``model_id``, or
        switches at once to the source of the last one that completed."""
        base = self._base(model_id)
        active = self._active.get(base)
        if active is not None:
            self._back_to_source(active, Status.ROLLED_BACK, "rolled back by an operator")
            return active.to_dict()
        done = to_roll_back(self._operations.values(), base, self.serving_version(base))
        if done is None:
            raise SwitchRefused(base, [f"nothing to roll back: no rollout of {base!r} completed"])
        result = await self.switch_model(base, done.source, Strategy.IMMEDIATE)
        if not result.success:
            raise SwitchRefused(base, result.errors)
        assert result.operation_id is not None
        op = self._operations[result.operation_id]
        op.note(self._wall(), f"rollback of {done.id}")
        return op.to_dict()

    # --- an operation's life ----------------------------------------------------------

    async def _prepare(self, op: Operation) -> None:
        """Load (and pin) the source and the target; then the first step."""
        versions = self.registry.versions[op.model]
        source, target = versions[op.source].record, versions[op.target].record
        loading = source
        try:
            self._hold(source)
            if op.strategy is not Strategy.IMMEDIATE:  # both will serve: both must stay
                await self._pool.load(source)
            loading = target
            self._hold(target)
            await self._pool.load(target)
        except ModelPoolError as error:
            if op.status is Status.PENDING:
                self._end(op, Status.FAILED, f"{loading} could not be made ready: {error}")
            return
        if op.status is Status.PENDING:
            op.move_to(Status.RUNNING)
            self._carry_out(op, step_to(op.plan, 0, self._clock()))

    def _carry_out(self, op: Operation, move: Move) -> None:
        """Do what a decision says: the only place an operation's traffic moves."""
        match move:
            case Stay():
                pass
            case Hold(until=until):
                op.next_step_at = until
                self._changed_op(op, f"held at {op.share:.0%}: {op.target} is at warning")
            case StepUp(step=step, share=share, next_at=next_at):
                op.step, op.share, op.next_step_at = step, share, next_at
                self._set_weights(op.model, split(op.target, op.source, share))
                self._changed_op(op, f"{op.target} takes {op.share:.0%} of traffic")
            case Promote(step=step):
                if step is not None:
                    op.step = step
                self._finish(op)
            case Revert():
                self._set_weights(op.model, split(op.target, op.source, 0.0))
                op.share = 0.0
                self._end(op, Status.COMPLETED, "test over; traffic back on the source")
                self._spawn(self._unload(self.registry.versions[op.model][op.target].record))
            case RollBack():
                self._back_to_source(op, Status.ROLLED_BACK, self._why_critical(op))

    def _finish(self, op: Operation) -> None:
        op.share = 1.0
        self._set_weights(op.model, split(op.target, op.source, 1.0))
        self._end(op, Status.COMPLETED, f"{op.target} takes all traffic")
        self._spawn(self._unload(self.registry.versions[op.model][op.source].record))

    def _back_to_source(self, op: Operation, status: Status, reason: str) -> None:
        moved = op.status is Status.RUNNING
        op.share = 0.0
        if moved:
            self._set_weights(op.model, split(op.target, op.source, 0.0))
        self._end(op, status, reason)
        self._spawn(self._unload(self.registry.versions[op.model][op.target].record))

    def _end(self, op: Operation, status: Status, reason: str) -> None:
        op.move_to(status)
        op.reason, op.next_step_at = reason, None
        self._active.pop(op.model, None)
        for version in (op.source, op.target):
            info = self.registry.versions[op.model].get(version)
            if info is not None:
                self._release(info.record)
        self._changed_op(op, reason)

    def _why_critical(self, op: Operation) -> str:
        requests = self.health.stats(op.model, op.target).requests
        return why_critical(op, self.health.active_alerts(), requests, self.health.window)

    def _on_alert(self, alert: Alert) -> None:
        self._pool.publish(
            EventKind.ALERT,
            alert.model_id,
            version=alert.version,
            level=str(alert.level),
            metric=alert.metric,
            value=alert.value,
            threshold=alert.threshold,
            resolved=alert.resolved,
        )
        op = self._active.get(alert.model_id)
        if op is not None and rolls_back_on(op, alert):
            self._back_to_source(op, Status.ROLLED_BACK, self._why_critical(op))

    async def _unload(self, record: str) -> None:
        """Let a version left behind finish its requests, then free its memory."""
        if record in self._holds:
            return  # a newer operation uses it again
        try:
            await self._pool.unload(record)
        except ModelPoolError as error:
            log.warning("could not unload %s after a rollout: %s", record, error)

    # --- pinning the versions an operation uses ---------------------------------------

    def _hold(self, record: str) -> None:
        if record not in self._holds:
            self._holds[record] = self._pool.pinned(record)
            self._pool.pin(record)

    def _release(self, record: str) -> None:
        was_pinned = self._holds.pop(record, None)
        if was_pinned is False:
            self._pool.unpin(record)

    # --- bookkeeping ------------------------------------------------------------------

    def _base(self, model: str) -> str:
        """The base id of the model ``model`` names (an id, alias or ``id@version``)."""
        return self._pool.spec(model).base_id

    def _set_weights(self, model: str, weights: Weights) -> None:
        # Saved with the operation's change that always follows: one write per step.
        self.registry.set_weights(model, weights)
        self._pool.publish(EventKind.ROUTE_CHANGED, model, weights=dict(weights))

    def _changed_op(self, op: Operation, message: str) -> None:
        op.note(self._wall(), message)
        self._pool.publish(EventKind.ROLLOUT, op.model, **op.summary(), message=message)
        self._save()
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _trim_history(self) -> None:
        for op in to_forget(self._operations.values(), self._max_operations):
            del self._operations[op.id]

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the state file ---------------------------------------------------------------

    def _save(self) -> None:
        if self._file is None:
            return
        try:
            self._file.save(self.registry.saved(), self._operations.values())
            self.save_error = None
        except StateError as error:
            if self.save_error is None:
                log.error("%s; rollouts go on, but a restart will not remember them", error)
            self.save_error = str(error)

    def _restore(self) -> None:
        if self._file is None:
            return
        saved = self._file.load()
        for warning in self._file.warnings:
            log.warning("%s", warning)
        if saved is None:
            return
        self.registry.restore(saved.models, STATE_FILE)
        for op in saved.operations:
            self._operations[op.id] = op
            if interrupted(op, self.registry.versions.get(op.model, {})):
                # Interrupted by a stop or a crash: end it safely, on the source.
                op.move_to(Status.ABORTED)
                op.share = 0.0
                op.reason = f"interrupted by a restart; traffic is back on {op.source}"
                op.note(self._wall(), op.reason)
                self.registry.set_weights(op.model, split(op.target, op.source, 0.0))
        self._save()
