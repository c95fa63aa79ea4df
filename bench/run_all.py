"""Every benchmark in one run, and one table of the ratios they measured.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--skip NAME ...] [--out DIR]

Runs the scripts in ``BENCHMARKS`` one after another with this interpreter, each one's
output streamed under a header line, and times each. Every script writes
``NAME.json`` with a top-level ``"ratios"`` list of its headline figures (built with
``ratio`` below). Only results files written during this run count: a file older
than its script's start is ignored. Then prints one table of every ratio, with the
machine and the time taken, and writes ``bench/results/run_all.{json,md}``.

``--quick`` is passed to every script that takes it; as each script's own ``--quick``
writes nothing into bench/results, the results then go to a temporary folder (or to
``--out``), and run_all's own files are written only with ``--out``. A script not
written yet is reported "missing"; one that fails is reported with its exit status,
the others still run, and run_all exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from machine import cpu_name

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
BENCHMARKS = (
    "core_overhead",
    "load_restore",
    "proxy_overhead",
    "health_record",
    "policy_quality",
    "placement_quality",
    "e2e_replay",
)
MARKS = {True: "✓", False: "✗", None: "–"}


def ratio(
    name: str, value: float, unit: str = "×", better: str = "higher", limit: float | None = None
) -> dict[str, Any]:
    """One entry of a results file's ``"ratios"``. ``limit``, in ``unit``, is the target:
    at least it when ``better`` is "higher", under it when "lower"; ``ok`` says if met."""
    target, ok = None, None
    if limit is not None:
        space = "" if unit in ("×", "%") else " "
        target = f"{'≥' if better == 'higher' else '<'} {limit:,g}{space}{unit}"
        ok = bool(value >= limit if better == "higher" else value < limit)
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "better": better,
        "target": target,
        "ok": ok,
    }


def shown(path: Path | str) -> str:
    """A path as a reader would type it: relative to the repository where it lies inside."""
    path = Path(os.path.abspath(path))  # no "..", symbolic links kept (a venv's python is one)
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)


def fresh_ratios(name: str, folders: list[Path], since: float) -> list[dict[str, Any]] | None:
    """The ratios in the first ``NAME.json`` of ``folders`` written after ``since``."""
    for folder in folders:
        path = folder / f"{name}.json"
        if path.is_file() and path.stat().st_mtime >= since:
            data = json.loads(path.read_text())
            return data.get("ratios") if isinstance(data, dict) else None
    return None


def run(name: str, quick: bool, out: Path, header: str, console: Console) -> dict[str, Any]:
    """Run one benchmark script; its status, seconds and the ratios it wrote."""
    script = BENCH / f"{name}.py"
    if not script.exists():
        console.rule(f"{header} {name}: missing ({shown(script)} does not exist)")
        return {"name": name, "status": "missing", "seconds": 0.0, "ratios": []}
    source = script.read_text()  # which options its argparse takes, without starting it
    command = [shown(sys.executable), shown(script)]
    if quick and '"--quick"' in source:
        command.append("--quick")
    if out != RESULTS and '"--out"' in source:
        command += ["--out", shown(out)]
    console.rule(f"{header} {shlex.join(command)}")
    sys.stdout.flush()
    since, start = time.time(), time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its output as it comes, also into a pipe
    code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    seconds = round(time.perf_counter() - start, 1)
    ratios = None if code else fresh_ratios(name, [out, RESULTS], since)
    if code:
        status = f"failed (exit {code})"
    elif ratios is None:
        status = f'wrote no ratios ({name}.json not written in this run, or no "ratios")'
    else:
        status = "ok"
    console.print(f"{name}: {status}, {seconds:.1f} s")
    return {"name": name, "status": status, "seconds": seconds, "ratios": ratios or []}


def describe_machine() -> dict[str, Any]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    gpu = None
    with contextlib.suppress(ImportError):
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 1e9, 1),
        "gpu": gpu,
        "python": platform.python_version(),
    }


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB RAM, "
        f"{machine['gpu'] or 'no GPU'}; Python {machine['python']}"
    )


def value_text(entry: dict[str, Any]) -> str:
    value, unit = entry["value"], entry["unit"]
    number = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{number}{'' if unit in ('×', '%') else ' '}{unit}"


def table_rows(runs: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """Benchmark, figure, value, target, ok: one row per ratio, or one for the status."""
    rows = []
    for result in runs:
        if not result["ratios"]:
            rows.append((result["name"], result["status"], "–", "–", "–"))
        for i, entry in enumerate(result["ratios"]):
            name = "" if i else result["name"]
            target = entry.get("target") or "–"
            rows.append((name, entry["name"], value_text(entry), target, MARKS[entry.get("ok")]))
    return rows


def timings(runs: list[dict[str, Any]], total: float) -> str:
    took = ", ".join(f"{r['name']} {r['seconds']:.0f} s" for r in runs if r["status"] != "missing")
    return f"{total:.0f} s in all ({took})"


def load_text(load: list[float]) -> str:
    return (
        f"Load average (1 min): {load[0]:.2f} before, {load[1]:.2f} after (other work shows here)"
    )


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# All benchmarks: the ratios of one run",
        "",
        f"Command: `{summary['command']}`  ",
        f"Machine: {machine_line(summary['machine'])}.  ",
        f"Run: {summary['started']}, {timings(summary['benchmarks'], summary['seconds'])}.  ",
        f"{load_text(summary['load_average'])}.",
        "",
        "| benchmark | figure | value | target | ok |",
        "|---|---|---:|---|:-:|",
        *("| " + " | ".join(row) + " |" for row in table_rows(summary["benchmarks"])),
        "",
        "Each benchmark's own tables and notes: `bench/results/NAME.md`.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each script's smoke run")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME", choices=BENCHMARKS)
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME", choices=BENCHMARKS)
    parser.add_argument("--out", type=Path, help="write every results file in this folder")
    args = parser.parse_args()
    names = [n for n in BENCHMARKS if (n in args.only or not args.only) and n not in args.skip]
    console = Console(width=None if sys.stdout.isatty() else 110, markup=False, highlight=False)
    command = shlex.join([shown(sys.executable), shown(__file__), *sys.argv[1:]])
    started = datetime.datetime.now().astimezone()
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="modelpool-bench-") as temporary:
        out = args.out.resolve() if args.out else Path(temporary) if args.quick else RESULTS
        out.mkdir(parents=True, exist_ok=True)
        runs = [
            run(name, args.quick, out, f"[{i}/{len(names)}]", console)
            for i, name in enumerate(names, 1)
        ]
    summary = {
        "command": command,
        "quick": args.quick,
        "machine": describe_machine(),
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "benchmarks": runs,
    }
    table = Table(title="Ratios measured in this run", title_justify="left")
    table.add_column("benchmark")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    table.add_column("ok", justify="center")
    for row in table_rows(runs):
        table.add_row(*row)
    console.rule()
    console.print(table)
    console.print(f"Machine: {machine_line(summary['machine'])}", soft_wrap=True)
    console.print(f"Took {timings(runs, summary['seconds'])}", soft_wrap=True)
    console.print(load_text(summary["load_average"]))
    if args.out or not args.quick:
        (out / "run_all.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        (out / "run_all.md").write_text(markdown(summary) + "\n")
        console.print(f"Wrote {shown(out / 'run_all.md')} and run_all.json")
    failed = [r["name"] for r in runs if r["status"] not in ("ok", "missing")]
    if failed:
        console.print(f"Not ok: {', '.join(failed)}", style="red")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
