"""An operation's life, carried out: the hands of the ``RolloutManager``.

``OperationRunner`` does what ``decisions`` answer and nothing else: it loads and pins
an operation's two versions, moves the traffic split a step at a time, ends the
operation (every status change through ``Operation.move_to``), and unloads the version
left behind once its in-flight requests are done. It decides nothing itself: which
step, when to hold and when to roll back come from ``decisions.step_to``,
``next_move`` and ``rolls_back_on``.

Its handlers (``tick``, ``on_alert``, ``back_to_source``) run on the pool's loop and
never await; the slow parts (loads, unloads) run as tasks it keeps, so that the
manager can wait for them or cancel them. After every change it notes the operation's
history, publishes a ``rollout`` event and calls ``on_change`` (the manager saves the
state file and wakes whoever waits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from modelpool.core.events import EventKind
from modelpool.core.pool import ModelPool
from modelpool.errors import ModelPoolError
from modelpool.monitor.health import Alert, HealthMonitor
from modelpool.rollout import decisions
from modelpool.rollout.book import OperationBook
from modelpool.rollout.decisions import Hold, Move, Promote, Revert, RollBack, Stay, StepUp
from modelpool.rollout.operation import Operation, Status
from modelpool.rollout.pins import Pins
from modelpool.rollout.registry import VersionRegistry
from modelpool.rollout.routing import split
from modelpool.rollout.strategies import Strategy

log = logging.getLogger("modelpool.rollout")


class OperationRunner:
    """Carries out the operations in ``book`` on ``pool``, as the decisions say."""

    def __init__(
        self,
        pool: ModelPool,
        registry: VersionRegistry,
        health: HealthMonitor,
        book: OperationBook,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
        on_change: Callable[[], None],
    ) -> None:
        self._pool, self._registry, self._health, self._book = pool, registry, health, book
        self._clock, self._wall, self._on_change = clock, wall, on_change
        self._pins = Pins(pool)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- what the manager asks --------------------------------------------------------

    def begin(self, op: Operation) -> None:
        """Make ``op`` its model's live operation and start loading its versions."""
        self._book.open(op)
        self.changed(op, f"{op.strategy} switch from {op.source} to {op.target} asked")
        self._spawn(self._prepare(op))

    def tick(self) -> None:
        """Take the steps that are due (health judged by the caller just before)."""
        now = self._clock()
        for op in self._book.running():
            level = self._health.level(op.model, op.target)
            self._carry_out(op, decisions.next_move(op, level, now))

    def on_alert(self, alert: Alert) -> None:
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
        op = self._book.live(alert.model_id)
        if op is not None and decisions.rolls_back_on(op, alert):
            self._carry_out(op, RollBack())

    def back_to_source(self, op: Operation, status: Status, reason: str) -> None:
        """End ``op`` as ``status``: all traffic back on its source, the target unloaded."""
        moved = op.status is Status.RUNNING
        op.share = 0.0
        if moved:
            self._set_weights(op, 0.0)
        self._end(op, status, reason)
        self._spawn(self._unload(self._record(op, op.target)))

    def changed(self, op: Operation, message: str) -> None:
        """Note ``message`` in ``op``'s history, publish it, save, wake the waiters."""
        op.note(self._wall(), message)
        self._pool.publish(EventKind.ROLLOUT, op.model, **op.summary(), message=message)
        self._on_change()

    async def settle(self) -> None:
        """Until the work started so far (loads, unloads of versions left behind) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        """Stop the work under way (the operations stay as they are)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- carrying it out --------------------------------------------------------------

    async def _prepare(self, op: Operation) -> None:
        """Load (and pin) the source and the target; then the first step."""
        source, target = self._record(op, op.source), self._record(op, op.target)
        loading = source
        try:
            self._pins.hold(source)
            if op.strategy is not Strategy.IMMEDIATE:  # both will serve: both must stay
                await self._pool.load(source)
            loading = target
            self._pins.hold(target)
            await self._pool.load(target)
        except ModelPoolError as error:
            if op.status is Status.PENDING:
                self._end(op, Status.FAILED, f"{loading} could not be made ready: {error}")
            return
        if op.status is Status.PENDING:  # not aborted or rolled back while it loaded
            op.move_to(Status.RUNNING)
            self._carry_out(op, decisions.step_to(op.plan, 0, self._clock()))

    def _carry_out(self, op: Operation, move: Move) -> None:
        """Do what a decision says: the only place a running operation's traffic moves."""
        match move:
            case Stay():
                pass
            case Hold(until=until):
                op.next_step_at = until
                self.changed(op, f"held at {op.share:.0%}: {op.target} is at warning")
            case StepUp(step=step, share=share, next_at=next_at):
                op.step, op.share, op.next_step_at = step, share, next_at
                self._set_weights(op, share)
                self.changed(op, f"{op.target} takes {op.share:.0%} of traffic")
            case Promote(step=step):
                op.step = op.step if step is None else step
                op.share = 1.0
                self._set_weights(op, 1.0)
                self._end(op, Status.COMPLETED, f"{op.target} takes all traffic")
                self._spawn(self._unload(self._record(op, op.source)))
            case Revert():
                op.share = 0.0
                self._set_weights(op, 0.0)
                self._end(op, Status.COMPLETED, "test over; traffic back on the source")
                self._spawn(self._unload(self._record(op, op.target)))
            case RollBack():
                self.back_to_source(op, Status.ROLLED_BACK, self._why_critical(op))

    def _end(self, op: Operation, status: Status, reason: str) -> None:
        op.move_to(status)
        op.reason, op.next_step_at = reason, None
        self._book.close(op)
        for version in (op.source, op.target):
            info = self._registry.versions[op.model].get(version)
            if info is not None:
                self._pins.release(info.record)
        self.changed(op, reason)

    def _why_critical(self, op: Operation) -> str:
        requests = self._health.stats(op.model, op.target).requests
        alerts = self._health.active_alerts()
        return decisions.why_critical(op, alerts, requests, self._health.window)

    async def _unload(self, record: str) -> None:
        """Let a version left behind finish its requests, then free its memory."""
        if record in self._pins:
            return  # a newer operation uses it again
        try:
            await self._pool.unload(record)
        except ModelPoolError as error:
            log.warning("could not unload %s after a rollout: %s", record, error)

    def _record(self, op: Operation, version: str) -> str:
        return self._registry.versions[op.model][version].record

    def _set_weights(self, op: Operation, share: float) -> None:
        # Saved with the operation's change that always follows: one write per step.
        weights = split(op.target, op.source, share)
        self._registry.set_weights(op.model, weights)
        self._pool.publish(EventKind.ROUTE_CHANGED, op.model, weights=dict(weights))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
