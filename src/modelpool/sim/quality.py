"""Policy quality over several workloads: each strategy's wait against the bound.

One comparison per workload (``compare``), then a strategies × workloads table of wait
over the bound's, and plain verdicts: the best and worst strategy on each workload and
which strategies pass a margin over the bound. ``modelpool bench`` prints it for a model
set; ``bench/policy_quality.py`` writes it for the demo set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from modelpool.sim.bound import BOUND_LABEL
from modelpool.sim.compare import Comparison, compare
from modelpool.sim.models import ModelSet
from modelpool.sim.traces import default_azure_path
from modelpool.sim.workloads import make_workload
from modelpool.types import Bytes, DeviceId

WORKLOADS = ("zipf", "bursty", "phases", "diurnal", "azure")
MARGIN = 1.15
"""How far above the bound's wait a strategy may be and still count as close."""


def available_workloads(names: Iterable[str] = WORKLOADS) -> tuple[list[str], list[str]]:
    """(the workloads that can run here, notes on those that cannot): the Azure trace
    is a file that an installed package may not have beside it."""
    runnable, notes = [], []
    for name in names:
        if name == "azure":
            try:
                default_azure_path()
            except FileNotFoundError as error:
                notes.append(f"azure skipped: {error}")
                continue
        runnable.append(name)
    return runnable, notes


def run_quality(
    models: ModelSet,
    *,
    workloads: Sequence[str] = WORKLOADS,
    budgets: Mapping[DeviceId, Bytes] | None = None,
    warm_budget: Bytes | None = None,
    requests: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[Comparison]:
    comparisons = []
    for name in workloads:
        workload = make_workload(name, models, seed=seed, requests=requests)

        def step(label: str, name: str = name) -> None:
            if progress is not None:
                progress(f"{name}: {label}")

        comparisons.append(
            compare(workload, models, budgets=budgets, warm_budget=warm_budget, progress=step)
        )
    return comparisons


def quality_rows(comparisons: Sequence[Comparison]) -> list[list[str]]:
    """One row per strategy and baseline (the bound itself left out): its label, then its
    wait over the bound's on each workload."""
    labels = [r.label for r in comparisons[0].rows if r.label != BOUND_LABEL]
    default = comparisons[0].default
    rows = []
    for label in labels:
        cells = [label + (" (default)" if label == default else "")]
        for c in comparisons:
            value = c.ratio(label, BOUND_LABEL)
            cells.append("–" if value is None else f"{value:.2f}×")
        rows.append(cells)
    return rows


def verdicts(comparisons: Sequence[Comparison], margin: float = MARGIN) -> list[str]:
    """Per workload: the best and the worst strategy, and those over ``margin`` × the bound."""
    lines = []
    for c in comparisons:
        ranked = sorted(c.strategies, key=lambda r: r.total_wait)
        if not ranked:
            continue
        best, worst = ranked[0].label, ranked[-1].label
        over = [r.label for r in ranked if (c.ratio(r.label, BOUND_LABEL) or 0) > margin]
        lines.append(
            f"{c.workload.name}: best {best} ({c.ratio(best, BOUND_LABEL):.2f}× the bound), "
            f"worst {worst} ({c.ratio(worst, BOUND_LABEL):.2f}×); over {margin:.2f}× the "
            f"bound: {', '.join(over) or 'none'}"
        )
    return lines
