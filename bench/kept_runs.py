"""Figures a reader can trust: several whole runs, each kept, reported by their median.

A benchmark that times something runs it ``--runs`` times (3 by default), writes every
run's result as a JSON of its own under ``bench/results/<name>/`` (never overwritten),
and reports the median of the runs, number by number (``median_of_runs``). With an odd
number of runs the median of a figure derived by a monotone function (a ratio to a fixed
value, a rate from seconds) is that function of the median: the report stays coherent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

DEFAULT_RUNS = 3


def add_runs_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--runs``: how many whole runs (``what``), each kept; default 3, 1 with --quick."""
    parser.add_argument(
        "--runs", type=int, default=None,
        help=f"{what}, each kept; the report is their median ({DEFAULT_RUNS}; 1 --quick)",
    )  # fmt: skip


def runs_wanted(runs: int | None, quick: bool) -> int:
    return runs or (1 if quick else DEFAULT_RUNS)


def median_of_runs(runs: list[Any]) -> Any:
    """The runs' common shape, each number the median of that number over the runs.

    Dicts are merged key by key (keys missing from a run are taken from the runs that
    have them); lists, strings and booleans come from the first run (a list of samples
    has no per-position meaning across runs)."""
    first = runs[0]
    if isinstance(first, dict):
        keys = dict.fromkeys(key for run in runs if isinstance(run, dict) for key in run)
        return {
            key: median_of_runs([run[key] for run in runs if isinstance(run, dict) and key in run])
            for key in keys
        }
    numbers = [run for run in runs if isinstance(run, int | float) and not isinstance(run, bool)]
    if len(numbers) == len(runs) and numbers:
        if all(isinstance(number, int) for number in numbers):
            return statistics.median_low(numbers)  # counts stay whole with an even number
        return round(statistics.median(numbers), 6)
    return first


def keep_runs(folder: Path, name: str, runs: list[dict[str, Any]]) -> list[Path]:
    """Write each run as ``folder/name/run-<stamp>-<n>.json``; the paths written."""
    kept = folder / name
    kept.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    paths = []
    for number, run in enumerate(runs, start=1):
        path = kept / f"run-{stamp}-{number}.json"
        path.write_text(json.dumps(run, indent=2) + "\n")
        paths.append(path)
    return paths


def spread(runs: list[dict[str, Any]], *path: str) -> list[Any]:
    """One figure (``path`` of keys into each run) across the runs, for the report."""
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(value)
    return values
