"""RolloutManager: a model's versions, the traffic between them, and safe switches.

It is the pool's ``Traffic``: every request for a model with versions is routed here,
and every lease that comes back is recorded in the ``HealthMonitor``. It is the thin
async shell of the rollouts: it answers the public API (seed 003's switch calls, the
versions, the admin routes) and leaves the thinking and the keeping to its parts:

- ``decisions``: what an operation does next, when it rolls back, what is wrong with
  a request. Pure functions of the operation, the health levels and the clock.
- ``runner``: ``OperationRunner`` carries the decisions out on the pool (loads, pins,
  traffic steps, unloads); ``book``: the operations kept and each model's live one.
- ``operation``: one switch, its ``Status`` and the table of moves between them.
- ``rollouts_file``: what ``<state_dir>/rollouts.json`` holds and how it is read back.
- ``registry``: the versions and each model's split; ``routing``: the pick.

Everything runs on the pool's loop, as the scheduler does: handlers that do not
await, slow work in tasks that report back, time from the injected clock. A switch is
checked first (every problem at once) and refused before any traffic moves. The state
file is written after every change; an operation found running at start was
interrupted: it ends ``aborted`` and its model's traffic goes back to its source.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelpool.config import Config, ModelSpec, merged_thresholds
from modelpool.core.events import EventKind
from modelpool.core.pool import ModelPool
from modelpool.errors import StateError, SwitchRefused, UnknownModel
from modelpool.monitor.health import HealthMonitor, Thresholds
from modelpool.rollout import decisions
from modelpool.rollout.book import OperationBook
from modelpool.rollout.operation import Operation, Status, wall_time
from modelpool.rollout.registry import VersionRegistry
from modelpool.rollout.rollouts_file import STATE_FILE, RolloutsFile
from modelpool.rollout.routing import Weights, split
from modelpool.rollout.runner import OperationRunner
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
        self._file = RolloutsFile(state_dir) if state_dir is not None else None
        self.save_error: str | None = None
        self.registry = VersionRegistry(pool, self._rng)
        self._book = OperationBook(max_operations)
        self._runner = OperationRunner(
            pool, self.registry, self.health, self._book,
            clock=clock, wall=wall, on_change=self._on_change,
        )  # fmt: skip
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
        self.health.add_handler(self._runner.on_alert)
        if self._interval is not None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    async def stop(self) -> None:
        """Stop watching; operations stay as they are in the state file."""
        if self._timer is not None:
            self._timer.cancel()
        await self._runner.cancel()
        self._pool.set_traffic(None)

    async def settle(self) -> None:
        """Until the work started so far (loads, unloads of versions left behind) is done."""
        await self._runner.settle()

    def _tick(self) -> None:
        self.tick()
        assert self._interval is not None
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def tick(self) -> None:
        """Judge health as time has passed and take the steps that are due."""
        self.health.check()
        self._runner.tick()

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
        live = self._book.live(base)
        return self.registry.listing(base, (live.source, live.target) if live else ())

    def describe(self, model: str) -> dict[str, Any]:
        """``model``'s versions, split and running rollout, as ``/admin`` shows them."""
        base = self._base(model)
        live = self._book.live(base)
        return {
            "model": base,
            "serving": self.serving_version(base),
            "weights": dict(self.weights(base)),
            "versions": self.versions(base),
            "rollout": live.summary() if live is not None else None,
        }

    def models_with_versions(self) -> list[str]:
        """The models that have more than one version."""
        return self.registry.with_versions()

    def weights(self, model: str) -> Weights:
        """``model``'s split now: (version, share) pairs, target first."""
        return self.registry.weights(self._base(model))

    def serving_version(self, model: str) -> str:
        """The version with the largest share (the one all traffic is on between rollouts)."""
        return self.registry.serving(self._base(model))

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
        created = wall_time(self._wall())
        info = self.registry.register(
            base, version, settings or {}, author=author, notes=notes, created=created
        )
        self._pool.publish(EventKind.VERSION_REGISTERED, info.record, version=version)
        self._save()
        return next(v for v in self.versions(base) if v["version"] == version)

    def models_changed(self, added: Iterable[ModelSpec], removed: Iterable[str]) -> None:
        """Models a config reload added (once the pool has them) or removed: their
        versions, split and routes follow."""
        for spec in added:
            self.registry.track(spec)
        for base in removed:
            self.registry.forget(base)

    def runtime_versions(self, model: str) -> list[str]:
        """The versions of ``model`` registered at run time (``register_version``)."""
        return self.registry.runtime_versions(self._base(model))

    async def unregister_version(self, model: str, version: str) -> None:
        """Forget a version registered at run time that carries no traffic; it is
        unloaded first, after its in-flight requests."""
        base = self._base(model)
        info = self.registry.info(base, version)
        share = dict(self.weights(base)).get(version, 0.0)
        problems = decisions.unregister_problems(version, info.origin, share, self._book.live(base))
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
        errors = decisions.switch_problems(
            base,
            target_version,
            strategy,
            strategy_config,
            records={v: info.record for v, info in self.registry.versions[base].items()},
            serving=self.serving_version(base),
            active=self._book.live(base),
            pool=self._pool,
        )
        return {"valid": not errors, "errors": errors}

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
        self._runner.begin(op)
        return SwitchResult(True, op.id, str(op.status))

    def get_switch_status(self, operation_id: str) -> dict[str, Any]:
        """Seed 003: status, progress, steps and history of one operation."""
        return self._book.get(operation_id).to_dict()

    def operations(self, model: str | None = None) -> list[dict[str, Any]]:
        """Summaries of the operations kept, newest first (of ``model`` if given)."""
        return self._book.summaries(self._base(model) if model is not None else None)

    async def wait(self, operation_id: str, *statuses: Status) -> dict[str, Any]:
        """Until the operation has one of ``statuses`` (default: it has ended)."""
        assert self._changed is not None, "start() the manager first"
        while True:
            op = self._book.get(operation_id)
            if op.status in statuses or (not statuses and op.ended):
                return op.to_dict()
            await self._changed.wait()

    def abort(self, operation_id: str) -> dict[str, Any]:
        """Stop an operation; traffic goes back to its source at once."""
        op = self._book.get(operation_id)
        if op.ended:
            raise SwitchRefused(op.model, [f"operation {op.id} has already ended ({op.status})"])
        self._runner.back_to_source(op, Status.ABORTED, "aborted by an operator")
        return op.to_dict()

    async def rollback(self, model_id: str) -> dict[str, Any]:
        """Back to the previous version: ends the running rollout of ``model_id``, or
        switches at once to the source of the last one that completed."""
        base = self._base(model_id)
        live = self._book.live(base)
        if live is not None:
            self._runner.back_to_source(live, Status.ROLLED_BACK, "rolled back by an operator")
            return live.to_dict()
        done = decisions.to_roll_back(self._book, base, self.serving_version(base))
        if done is None:
            raise SwitchRefused(base, [f"nothing to roll back: no rollout of {base!r} completed"])
        result = await self.switch_model(base, done.source, Strategy.IMMEDIATE)
        if not result.success:
            raise SwitchRefused(base, result.errors)
        assert result.operation_id is not None
        op = self._book.get(result.operation_id)
        op.note(self._wall(), f"rollback of {done.id}")
        return op.to_dict()

    # --- bookkeeping ------------------------------------------------------------------

    def _base(self, model: str) -> str:
        """The base id of the model ``model`` names (an id, alias or ``id@version``)."""
        return self._pool.spec(model).base_id

    def _on_change(self) -> None:
        self._save()
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    # --- the state file (its format: rollouts_file.py) -------------------------------

    def _save(self) -> None:
        if self._file is None:
            return
        try:
            self._file.save(self.registry.saved(), self._book)
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
            self._book.keep(op)
            if decisions.interrupted(op, self.registry.versions.get(op.model, {})):
                # Cut short by a stop or a crash: end it safely, on the source.
                op.move_to(Status.ABORTED)
                op.share = 0.0
                op.reason = f"interrupted by a restart; traffic is back on {op.source}"
                op.note(self._wall(), op.reason)
                self.registry.set_weights(op.model, split(op.target, op.source, 0.0))
        self._save()
