"""A comparison as a table: the same cells for the terminal (rich) and for markdown."""

from __future__ import annotations

from modelpool.sim.bound import BOUND_LABEL
from modelpool.sim.compare import EXCLUSIVE_LABEL, Comparison
from modelpool.sim.results import RunResult

HEADERS = (
    "strategy",
    "hits",
    "loads",
    "restores",
    "wait",
    "p95 wait",
    "> SLO",
    "moved",
    "÷ bound",
    "÷ exclusive",
)
"""``hits``: requests served at once; ``loads``: cold loads; ``wait``: seconds requests
spent waiting for their model, summed; ``moved``: weights copied; ``÷ bound`` and
``÷ exclusive``: the wait over theirs."""


def _ratio(value: float | None) -> str:
    if value is None:
        return "–"
    return "∞" if value == float("inf") else f"{value:.2f}×"


def _seconds(value: float) -> str:
    return f"{value:,.0f} s" if value >= 100 else f"{value:.1f} s"


def gigabytes(size: int) -> str:
    """Decimal GB, as model sizes and budgets are usually written."""
    return f"{size / 1000**3:,.0f} GB" if size >= 100 * 1000**3 else f"{size / 1000**3:.1f} GB"


def row_cells(comparison: Comparison, row: RunResult) -> list[str]:
    label = row.label + (" (default)" if row.label == comparison.default else "")
    return [
        label,
        f"{row.hit_rate:.1%}",
        f"{row.cold_loads:,}",
        f"{row.warm_restores:,}",
        _seconds(row.total_wait),
        _seconds(row.p95_wait),
        f"{row.over_slo:,}",
        gigabytes(row.bytes_moved),
        _ratio(comparison.ratio(row.label, BOUND_LABEL)),
        _ratio(comparison.ratio(row.label, EXCLUSIVE_LABEL)),
    ]


def table_cells(comparison: Comparison) -> list[list[str]]:
    return [row_cells(comparison, row) for row in comparison.rows]


def caption(comparison: Comparison) -> list[str]:
    """Lines that say what was replayed on what, and how to read the table."""
    workload = comparison.workload
    budgets = ", ".join(f"{d} {gigabytes(b)}" for d, b in comparison.budgets.items())
    about = f" ({workload.description})" if workload.description else ""
    lines = [
        f"workload {workload.name}: {len(workload.requests):,} requests over "
        f"{workload.duration / 60:,.1f} min{about}",
        f"models {comparison.models.name} ({len(comparison.models.models)} models, "
        f"{gigabytes(sum(m.bytes for m in comparison.models.models))}); budget {budgets}; "
        f"warm tier {gigabytes(comparison.warm_budget) if comparison.warm_budget else 'off'}; "
        f"SLO {comparison.slo:g} s",
        f"{EXCLUSIVE_LABEL}: one model resident at a time, no warm tier (llama-swap's default). "
        f"{BOUND_LABEL}: offline reference that knows the future, not a guarantee.",
    ]  # fmt: skip
    if comparison.optimum_note is None:
        lines.append(
            "optimum (exact, in order): the least load seconds any strategy could pay serving "
            "the requests in arrival order; its waits count only each miss's load."
        )
    else:
        lines.append(f"exact optimum not computed: {comparison.optimum_note}")
    return lines


def markdown(comparison: Comparison) -> str:
    lines = [f"### {comparison.workload.name}", ""]
    lines += [f"- {line}" for line in caption(comparison)]
    lines += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_cells(comparison)]
    return "\n".join(lines) + "\n"
