"""A comparison's result files: markdown table, JSON, and the plot."""

from __future__ import annotations

import json
import os
from pathlib import Path

from modelpool.sim.compare import Comparison
from modelpool.sim.report import markdown


def write_text(path: Path, text: str) -> Path:
    """Write through a temporary file, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def write_results(comparison: Comparison, folder: Path, *, plot: bool = True) -> list[Path]:
    """``NAME.md``, ``NAME.json`` and (with ``plot``) ``NAME.png`` in ``folder``."""
    stem = folder / comparison.workload.name
    written = [
        write_text(stem.with_suffix(".md"), markdown(comparison)),
        write_text(stem.with_suffix(".json"), json.dumps(comparison.as_dict(), indent=2) + "\n"),
    ]
    if plot:
        from modelpool.sim.plot import plot_comparison

        written.append(plot_comparison(comparison, stem.with_suffix(".png")))
    return written
