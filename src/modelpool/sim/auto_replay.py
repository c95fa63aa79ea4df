"""``strategy: auto`` replayed by the simulator, so its benefit is measured the way every
fixed strategy's is.

The replay starts from ``AUTO_STARTS_FROM`` and, every ``interval`` virtual seconds,
does what the live pool does: replays the requests of the last ``window`` seconds once
per candidate (``sim/replay.py``, with the model set's costs standing for the measured
ones), decides with ``choose_strategy``, and switches the scheduler's policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from modelpool.config import AUTO_STARTS_FROM, AutoOptions, PoolSettings
from modelpool.plugins import POLICIES
from modelpool.sim.auto_choice import CandidateRow, choose_strategy
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet
from modelpool.sim.replay import PoolPicture, replay_table
from modelpool.sim.results import RunResult
from modelpool.sim.workload import Workload
from modelpool.types import Bytes, DeviceId

AUTO_LABEL = "auto"


@dataclass(frozen=True)
class Evaluated:
    """One evaluation on the virtual clock: what the window's replay said, and the choice."""

    at: float
    current: str
    chosen: str
    why: str
    requests: int
    table: list[CandidateRow]


@dataclass
class AutoReplay:
    """The hook a ``Simulation`` calls every interval: evaluate, and maybe switch."""

    picture: PoolPicture
    options: AutoOptions
    switches: list[tuple[float, str, str]] = field(default_factory=list)
    """(virtual time, from, to) of each switch."""
    evaluations: list[Evaluated] = field(default_factory=list)
    """Every evaluation with its table, to explain a draw (``bench/auto_quality.py``)."""

    def __call__(self, simulation: Simulation) -> None:
        now = simulation.clock.now
        cutoff = now - self.options.window
        window = [a for a in simulation.arrived if a.at >= cutoff]
        window = window[-self.options.max_requests :]
        current = simulation.scheduler.policy.name
        candidates = list(self.options.candidates) or POLICIES.names()
        table = replay_table(window, self.picture, candidates, current)
        chosen, why = choose_strategy(current, table, self.options.hysteresis)
        self.evaluations.append(Evaluated(now, current, chosen, why, len(window), table))
        if chosen != current:
            simulation.scheduler.set_policy(POLICIES.get(chosen)())
            self.switches.append((now, current, chosen))


def simulate_auto(
    workload: Workload,
    models: ModelSet,
    *,
    options: AutoOptions | None = None,
    budgets: Mapping[DeviceId, Bytes] | None = None,
    warm_budget: Bytes | None = None,
    settings: PoolSettings | None = None,
    slo: float = 5.0,
) -> tuple[RunResult, AutoReplay]:
    """``workload`` under ``strategy: auto``: its result (labelled ``auto``) and the hook,
    whose ``switches`` say when it changed strategy."""
    options = options or AutoOptions()
    budgets = dict(models.budgets if budgets is None else budgets)
    warm = models.warm_budget if warm_budget is None else warm_budget
    settings = settings or PoolSettings()
    hook = AutoReplay(PoolPicture(models.models, budgets, warm, settings), options)
    result = Simulation(
        workload,
        models,
        POLICIES.get(AUTO_STARTS_FROM)(),
        budgets=budgets,
        warm_budget=warm,
        slo=slo,
        label=AUTO_LABEL,
        settings=settings,
        every=(options.interval, hook),
    ).run()
    return result, hook
