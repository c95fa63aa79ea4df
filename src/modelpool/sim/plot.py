"""Plots of comparisons as PNG files (matplotlib, from the ``sim`` extra)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelpool.sim.bound import BOUND_LABEL
from modelpool.sim.compare import Comparison

INSTALL_HINT = "plots need matplotlib: pip install 'modelpool[sim]'"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise RuntimeError(INSTALL_HINT) from error
    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    return plt


def plot_comparison(comparison: Comparison, path: Path) -> Path:
    """Two panels: each row's total load wait (the bound as a line) and its hit rate."""
    plt = _pyplot()
    rows = comparison.rows
    labels = [r.label + (" *" if r.label == comparison.default else "") for r in rows]
    colors = [
        "tab:green" if r.label == BOUND_LABEL or r.exact
        else "tab:red" if r.label == "exclusive"
        else "tab:orange" if r.label == comparison.default
        else "tab:blue"
        for r in rows
    ]  # fmt: skip
    figure, (waits, hits) = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.6))
    waits.barh(labels, [r.total_wait for r in rows], color=colors)
    bound = comparison.bound
    if bound is not None:
        waits.axvline(bound.total_wait, color="tab:green", linestyle="--", linewidth=1)
    waits.set_xlabel("total load wait (s)")
    waits.invert_yaxis()
    hits.barh(labels, [100 * r.hit_rate for r in rows], color=colors)
    hits.set_xlabel("hit rate (%)")
    hits.set_xlim(0, 100)
    hits.invert_yaxis()
    hits.set_yticklabels([])
    figure.suptitle(
        f"{comparison.workload.name} on {comparison.models.name} "
        f"(* default strategy; green: offline bound)"
    )
    return _save(plt, figure, path)


def plot_quality(comparisons: Sequence[Comparison], path: Path) -> Path:
    """Each strategy's load wait over the bound's, one group of bars per workload."""
    plt = _pyplot()
    labels = [r.label for r in comparisons[0].rows if r.label != BOUND_LABEL and not r.exact]
    figure, axis = plt.subplots(figsize=(max(8, 1.6 * len(comparisons) * 1.5), 5))
    width = 0.8 / len(labels)
    for n, label in enumerate(labels):
        ratios = [c.ratio(label, BOUND_LABEL) or 0.0 for c in comparisons]
        axis.bar(
            [i + n * width for i in range(len(comparisons))],
            ratios,
            width,
            label=label + (" (default)" if label == comparisons[0].default else ""),
        )
    axis.axhline(1.0, color="black", linewidth=1)
    axis.axhline(1.15, color="tab:green", linestyle="--", linewidth=1, label="bound + 15%")
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(comparisons))])
    axis.set_xticklabels([c.workload.name for c in comparisons])
    axis.set_ylabel("load wait / bound's")
    axis.set_yscale("log")
    axis.legend(fontsize="small", ncols=2)
    return _save(plt, figure, path)


def _save(plt: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")  # never half a PNG under its name
    figure.savefig(partial, dpi=110, format="png")
    plt.close(figure)
    os.replace(partial, path)
    return path
