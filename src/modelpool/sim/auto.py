"""``strategy: auto``: every interval, replay the pool's recent traffic through the
simulator once per candidate strategy and switch to the one that would have waited least.

The shell around three pure parts: the traffic window (``core/traffic_window.py``), the
replay (``sim/replay.py``) and the decision (``sim/auto_choice.py``). What it reads from
the pool (the window, the models' measured costs, the settings) is copied on the pool's
loop; the replay itself runs on a worker thread, so no request waits for it. A replay
that fails or runs past ``auto_options.timeout`` is logged and skipped: the strategy
stays. Every evaluation is an event (``strategy_evaluated``) carrying its table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelpool.config import AUTO_STRATEGY, AutoOptions
from modelpool.core.events import EventKind
from modelpool.core.pool import ModelPool
from modelpool.core.traffic_window import Arrival, TrafficWindow
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.plugins import POLICIES
from modelpool.sim.auto_choice import CandidateRow, choose_strategy
from modelpool.sim.replay import PoolPicture, picture_of, replay_table

log = logging.getLogger("modelpool.auto")

Replay = Callable[[Sequence[Arrival], PoolPicture, Sequence[str], str], list[CandidateRow]]
"""What replays a window: ``replay_table`` (a test may pass a fake, run on a thread)."""
WORKER = "modelpool.sim.replay_worker"
TAIL = 500
"""Characters of a failed worker's stderr kept in the log and the event."""


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: what was compared, what was chosen, and why."""

    at: float
    """Pool clock seconds."""
    current: str
    """The strategy before the evaluation."""
    chosen: str
    why: str
    table: list[CandidateRow] = field(default_factory=list)
    requests: int = 0
    """Requests in the replayed window."""
    error: str | None = None
    """Why the replay was skipped (it failed, or ran past the timeout)."""

    @property
    def switched(self) -> bool:
        return self.chosen != self.current

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "current": self.current,
            "chosen": self.chosen,
            "switched": self.switched,
            "why": self.why,
            "requests": self.requests,
            "error": self.error,
            "table": [row.as_dict() for row in self.table],
        }


class AutoStrategy:
    """Runs the evaluations of one pool with ``strategy: auto``."""

    def __init__(
        self,
        pool: ModelPool,
        options: AutoOptions | None = None,
        *,
        replay: Replay | None = None,
    ) -> None:
        """``replay``: None replays for real (in a worker process or a thread, as
        ``replay_in`` says); a callable given here runs on a thread."""
        window = pool.traffic_window
        if window is None:
            where = "pool.strategy"
            message = f"is {pool.settings.strategy!r}: auto needs strategy: {AUTO_STRATEGY}"
            raise ConfigError([ConfigIssue("<pool>", where, message)])
        self._pool = pool
        self._window: TrafficWindow = window
        self.options = options if options is not None else pool.settings.auto_options
        self._replay = replay
        self._task: asyncio.Task[None] | None = None
        self._replaying: asyncio.Task[list[CandidateRow]] | None = None
        self.last: Evaluation | None = None
        """The latest evaluation, skipped or not."""
        self.last_compared: Evaluation | None = None
        """The latest evaluation whose replay ran: its table is what ``status`` shows."""
        self.evaluations = 0
        self.switches = 0
        self.skipped = 0
        self.why = f"auto starts from {pool.strategy}; no evaluation yet"

    @property
    def candidates(self) -> list[str]:
        return list(self.options.candidates) or POLICIES.names()

    def status(self) -> dict[str, Any]:
        """What ``GET /admin/strategy`` shows."""
        return {
            "strategy": self._pool.strategy,
            "auto": True,
            "why": self.why,
            "interval_s": self.options.interval,
            "window_s": self.options.window,
            "hysteresis": self.options.hysteresis,
            "candidates": self.candidates,
            "evaluations": self.evaluations,
            "switches": self.switches,
            "skipped": self.skipped,
            "last": self.last_compared.as_dict() if self.last_compared is not None else None,
            "last_skipped": self.last.error if self.last is not None else None,
        }

    # --- running -------------------------------------------------------------------

    def start(self) -> None:
        """Evaluate every ``interval`` seconds on the running loop until ``stop``."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._every_interval())

    async def stop(self) -> None:
        """No more evaluations; a replay in a worker process is killed."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._abandon_replay()

    async def _abandon_replay(self) -> None:
        """Stop a replay in progress in a worker process (killed and reaped) and wait for
        it; one on a thread cannot be stopped: it runs on, and no other starts meanwhile."""
        replaying = self._replaying
        if replaying is None or replaying.done() or not self._in_process:
            return
        replaying.cancel()
        await asyncio.wait({replaying})

    @property
    def _in_process(self) -> bool:
        return self._replay is None and self.options.replay_in == "process"

    async def _run_replay(
        self, arrivals: list[Arrival], picture: PoolPicture, current: str
    ) -> list[CandidateRow]:
        args = (arrivals, picture, self.candidates, current)
        if not self._in_process:
            return await asyncio.to_thread(self._replay or replay_table, *args)
        path = os.pathsep.join(p for p in sys.path if p)  # the modelpool this one runs
        starting = asyncio.ensure_future(asyncio.create_subprocess_exec(
            sys.executable, "-m", WORKER,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": path},
        ))  # fmt: skip
        try:
            process = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Cancelled while the process was being started: it starts all the same, so
            # it is killed and reaped here, or it would outlive the replay.
            started = await starting
            started.kill()
            await started.wait()
            raise
        try:
            out, err = await process.communicate(pickle.dumps(args))
        finally:
            if process.returncode is None:  # cancelled: past the timeout, or stopping
                process.kill()
                await process.wait()
        if process.returncode != 0:
            tail = err.decode(errors="replace")[-TAIL:].strip()
            raise RuntimeError(f"the replay process exited with {process.returncode}: {tail}")
        table: list[CandidateRow] = pickle.loads(out)
        return table

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.options.interval)
            try:
                await self.evaluate()
            except Exception:  # an evaluation must never end the loop
                log.exception("strategy auto: the evaluation failed; the strategy stays")

    async def evaluate(self) -> Evaluation:
        """Replay the window once per candidate, decide, publish, and switch if chosen."""
        pool = self._pool
        status = pool.get_resource_status()
        now, current = status["clock"], pool.strategy
        if self._replaying is not None and not self._replaying.done():
            return self._skipped(now, current, 0, "the previous replay is still running")
        arrivals = self._window.arrivals(now)
        picture = picture_of(status, pool.settings)
        replaying = asyncio.get_running_loop().create_task(
            self._run_replay(arrivals, picture, current)
        )
        self._replaying = replaying
        done, _ = await asyncio.wait({replaying}, timeout=self.options.timeout)
        if not done:
            await self._abandon_replay()  # a process is killed; a thread runs on, unheard
            seconds = self.options.timeout
            return self._skipped(now, current, len(arrivals), f"ran past {seconds:g} s")
        try:
            table = replaying.result()
        except Exception as error:
            log.exception("strategy auto: the replay failed")
            return self._skipped(now, current, len(arrivals), f"failed: {error!r}")
        if pool.strategy != current:  # set by hand while the replay ran: that wins
            why = f"changed to {pool.strategy} by hand during the replay"
            return self._skipped(now, current, len(arrivals), why)
        chosen, why = choose_strategy(current, table, self.options.hysteresis)
        evaluation = Evaluation(now, current, chosen, why, table, len(arrivals))
        self._record(evaluation)
        if evaluation.switched:
            self.switches += 1
            pool.set_switching_strategy(chosen, why=why, table=self._table(evaluation))
        return evaluation

    def _skipped(self, now: float, current: str, requests: int, error: str) -> Evaluation:
        log.warning("strategy auto: replay skipped (%s); %s stays", error, current)
        self.skipped += 1
        evaluation = Evaluation(
            now, current, current, f"replay skipped: {error}", [], requests, error
        )
        self._record(evaluation)
        return evaluation

    def _record(self, evaluation: Evaluation) -> None:
        self.evaluations += 1
        self.last = evaluation
        if evaluation.error is None:
            self.why = evaluation.why
            self.last_compared = evaluation
        detail = evaluation.as_dict()
        del detail["at"]  # the event has its own
        self._pool.publish(EventKind.STRATEGY_EVALUATED, None, **detail)

    @staticmethod
    def _table(evaluation: Evaluation) -> list[dict[str, Any]]:
        return [row.as_dict() for row in evaluation.table]
