"""``modelpool simulate`` and ``modelpool bench``: the simulator from the command line.

Both run on this machine, with no server and no GPU: the pool's scheduler and policies
on a virtual clock (``modelpool.sim``). ``simulate`` replays one workload against every
strategy and the bound, prints one table and writes it as markdown, JSON and a PNG plot
under ``--out``; ``bench`` replays every provided workload and prints each strategy's
wait over the bound's. Exit codes: 0 ok, 2 invalid input (an unknown workload, model
set or strategy, a bad size or file).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelpool.cli.shared import EXIT_INVALID, JsonOption, app, fail, out, print_json, warn
from modelpool.config import PoolSettings
from modelpool.durations import parse_duration
from modelpool.errors import PluginNotFound
from modelpool.plugins import POLICIES
from modelpool.units import parse_size

T = TypeVar("T")

WIDE = 140

# The options ``simulate`` and ``bench`` share.
ModelsOption = Annotated[
    str, typer.Option("--models", "-m", help="A built-in model set (demo) or a YAML/JSON file.")
]
BudgetOption = Annotated[
    list[str] | None,
    typer.Option(help="SIZE for the set's device, or DEVICE=SIZE; repeat for more devices."),
]
WarmBudgetOption = Annotated[
    str | None, typer.Option(help="Host RAM for the warm tier (0: off); default: the set's.")
]


def _option(name: str, parse: Callable[[str], T], value: str | None) -> T | None:
    """``parse(value)``, with the option's name in the error; None stays None."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def _settings(base: PoolSettings, **changes: Any) -> PoolSettings:
    """``base`` with the options given, each problem named by its option."""
    try:
        return base.changed(**changes)
    except ValidationError as error:
        problems = []
        for detail in error.errors(include_url=False):
            message = str(detail["msg"]).removeprefix("Value error, ")
            loc = detail["loc"]
            key, _, rest = message.partition(": ")
            if not loc and rest:  # a cross-field problem names its key: pool.low_watermark
                loc, message = (key.removeprefix("pool."),), rest
            option = "--" + "-".join(str(part) for part in loc).replace("_", "-")
            problems.append(f"{option}: {message}" if loc else message)
        raise ValueError("; ".join(problems)) from None


@app.command()
def simulate(
    workload: Annotated[
        str,
        typer.Option(
            "--workload",
            "-w",
            help="zipf, bursty, phases, diurnal, azure (the Azure LLM trace), or a CSV file "
            "with time and model columns.",
        ),
    ] = "zipf",
    models: ModelsOption = "demo",
    budget: BudgetOption = None,
    warm_budget: WarmBudgetOption = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option("--strategy", "-s", help="Strategies to compare (repeat); default: all."),
    ] = None,
    trace: Annotated[
        Path | None, typer.Option(help="The trace file for --workload azure or csv.")
    ] = None,
    requests: Annotated[
        int | None, typer.Option(min=1, help="Requests to generate (synthetic workloads).")
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="Length of a synthetic workload (1h, 90m...).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the workload generator.")] = 0,
    slo: Annotated[str, typer.Option(help="Count requests that waited longer than this.")] = "5s",
    starvation_limit: Annotated[
        str | None,
        typer.Option(help="The pool's starvation_limit to simulate (default: the pool's, 10s)."),
    ] = None,
    high_watermark: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Unload idle models above this share of a budget."),
    ] = None,
    low_watermark: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="...down to this share (default: 0.1 below)."),
    ] = None,
    max_models: Annotated[
        int | None, typer.Option(min=1, help="At most this many models loaded at once.")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the table, JSON and plot.")
    ] = Path("simulation"),
    plot: Annotated[bool, typer.Option(help="Write the PNG plot.")] = True,
    exact: Annotated[
        bool, typer.Option(help="Solve the exact optimum when the instance is small enough.")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Replay a workload against every strategy, exclusive, and the offline bound."""
    from modelpool.sim.compare import compare
    from modelpool.sim.files import write_results
    from modelpool.sim.models import ModelSet, parse_budgets
    from modelpool.sim.report import HEADERS, caption, table_cells
    from modelpool.sim.workloads import make_workload

    try:
        model_set = ModelSet.named(models)
        budgets = parse_budgets(budget or [], model_set)
        warm = _option("--warm-budget", parse_size, warm_budget)
        slo_seconds = _option("--slo", parse_duration, slo) or 0.0
        limit = _option("--starvation-limit", parse_duration, starvation_limit)
        settings = _settings(
            PoolSettings(),
            starvation_limit=limit,
            high_watermark=high_watermark,
            low_watermark=low_watermark,
            max_models=max_models,
        )
        length = _option("--duration", parse_duration, duration)
        names = list(strategy) if strategy else None
        for name in names or ():
            POLICIES.get(name)
        chosen = make_workload(
            workload,
            model_set,
            seed=seed,
            requests=requests,
            duration=length,
            trace=trace,
        )
    except (ValueError, OSError, PluginNotFound) as error:
        raise fail(str(error), EXIT_INVALID) from None

    live = not as_json and sys.stderr.isatty()
    watching = Console(stderr=True).status("replaying") if live else contextlib.nullcontext()
    with watching as status:

        def progress(label: str) -> None:
            if status is not None:
                status.update(f"replaying {chosen.name}: {label}")

        comparison = compare(
            chosen,
            model_set,
            strategies=names,
            budgets=budgets,
            warm_budget=warm,
            slo=slo_seconds,
            exact=exact,
            settings=settings,
            progress=progress,
        )
    try:
        written = write_results(comparison, out_dir, plot=plot)
    except RuntimeError as error:  # no matplotlib: keep the table, say how to get plots
        written = write_results(comparison, out_dir, plot=False)
        warn(f"note: {error}")
    except OSError as error:
        raise fail(f"cannot write results under {out_dir}: {error}", EXIT_INVALID) from None
    if as_json:
        print_json(comparison.as_dict() | {"files": [str(p) for p in written]})
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"modelpool simulate: {chosen.name}")
    for n, header in enumerate(HEADERS):
        table.add_column(header, no_wrap=True, justify="left" if n == 0 else "right")
    for cells in table_cells(comparison):
        table.add_row(*cells)
    # Piped output is read in a file or a wide window: don't squeeze it into 80 columns.
    console = out if out.is_terminal else Console(width=WIDE, highlight=False)
    console.print(table)
    for line in caption(comparison):
        console.print(Text(line, style="dim"))
    console.print("wrote " + ", ".join(str(p) for p in written))


@app.command()
def bench(
    models: ModelsOption = "demo",
    budget: BudgetOption = None,
    warm_budget: WarmBudgetOption = None,
    workload: Annotated[
        list[str] | None,
        typer.Option("--workload", "-w", help="Workloads to replay (repeat); default: all."),
    ] = None,
    requests: Annotated[
        int | None, typer.Option(min=1, help="Requests per synthetic workload.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the workload generators.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Which strategy for these models? Every strategy's wait over the offline bound's,
    on every provided workload."""
    from modelpool.sim.models import ModelSet, parse_budgets
    from modelpool.sim.quality import WORKLOADS, available_workloads, quality_rows, run_quality
    from modelpool.sim.quality import verdicts as verdict_lines

    try:
        model_set = ModelSet.named(models)
        budgets = parse_budgets(budget or [], model_set)
        warm = _option("--warm-budget", parse_size, warm_budget)
        unknown = [name for name in workload or () if name not in WORKLOADS]
        if unknown:
            raise ValueError(
                f"unknown workload {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(WORKLOADS)}; a CSV trace goes to `modelpool simulate`)"
            )
        names, notes = available_workloads(workload or WORKLOADS)
        live = not as_json and sys.stderr.isatty()
        watching = Console(stderr=True).status("replaying") if live else contextlib.nullcontext()
        with watching as status:
            comparisons = run_quality(
                model_set,
                workloads=names,
                budgets=budgets,
                warm_budget=warm,
                requests=requests,
                seed=seed,
                progress=(lambda step: status.update(f"replaying {step}")) if status else None,
            )
    except (ValueError, OSError) as error:
        raise fail(str(error), EXIT_INVALID) from None
    if as_json:
        print_json({"notes": notes, "workloads": [c.as_dict() for c in comparisons]})
        return
    table = Table(
        box=box.SIMPLE_HEAD, title=f"modelpool bench: {model_set.name}, wait ÷ the bound's"
    )
    table.add_column("strategy", no_wrap=True)
    for c in comparisons:
        table.add_column(c.workload.name, justify="right", no_wrap=True)
    for cells in quality_rows(comparisons):
        table.add_row(*cells)
    console = out if out.is_terminal else Console(width=WIDE, highlight=False)
    console.print(table)
    for line in verdict_lines(comparisons) + notes:
        console.print(Text(line, style="dim"))


@app.command("simulate-cluster")
def simulate_cluster(
    workload: Annotated[
        str, typer.Option("--workload", "-w", help="zipf or azure, scaled to the cluster.")
    ] = "azure",
    nodes: Annotated[int, typer.Option(min=1, help="Nodes of eight 24 GB GPUs.")] = 100,
    model_count: Annotated[
        int, typer.Option(min=1, help="Models drawn from the box set's kinds.")
    ] = 1000,
    requests: Annotated[int, typer.Option(min=1, help="Requests for zipf.")] = 100_000,
    copies: Annotated[
        int, typer.Option(min=1, help="For azure: the trace laid this many times over its hour.")
    ] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the models, workload and routers.")] = 0,
    without: Annotated[
        list[str] | None,
        typer.Option(help="Leave a setup out (repeat): ray_default, ray_default_safe, random."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay an hour on a cluster: our router vs Ray Serve's default vs random."""
    from modelpool.sim.cluster import (
        ClusterSimulation,
        ray_models_per_node,
        ray_safe_models_per_node,
        setups,
    )
    from modelpool.sim.cluster_set import cluster_azure, cluster_model_set, cluster_zipf

    try:
        models = cluster_model_set(model_count, seed=seed)
        if workload == "zipf":
            chosen = cluster_zipf(models, requests=requests, seed=seed)
        elif workload == "azure":
            chosen = cluster_azure(models, copies=copies, seed=seed)
        else:
            raise ValueError(f"unknown workload {workload!r}: give zipf or azure")
        every = setups(ray_models_per_node(models), ray_safe_models_per_node(models))
        unknown = sorted(set(without or ()) - (set(every) - {"modelpool"}))
        if unknown:
            raise ValueError(
                f"--without {', '.join(unknown)}: give ray_default, ray_default_safe or random"
            )
    except (ValueError, OSError) as error:
        raise fail(str(error), EXIT_INVALID) from None
    rows = []
    for name, setup in every.items():
        if name in (without or ()):
            continue
        simulation = ClusterSimulation(chosen, models, setup, nodes=nodes, seed=seed)
        result = simulation.run()
        rows.append(result.as_dict() | {"over_memory": simulation.over_memory})
    if as_json:
        print_json({"workload": chosen.description, "nodes": nodes, "rows": rows})
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"modelpool simulate-cluster: {chosen.name}")
    headers = ("setup", "total wait", "cold loads", "p95 wait", "hits", "over memory", "replay")
    for n, header in enumerate(headers):
        table.add_column(header, no_wrap=True, justify="left" if n == 0 else "right")
    for row in rows:
        table.add_row(
            row["label"], f"{row['total_wait']:,.0f} s", f"{row['cold_loads']:,}",
            f"{row['p95_wait']:.1f} s", f"{row['hit_rate']:.1%}", f"{row['over_memory']:,}",
            f"{row['wall_seconds']:.1f} s",
        )  # fmt: skip
    console = out if out.is_terminal else Console(width=WIDE, highlight=False)
    console.print(table)
    console.print(Text(f"{chosen.description}; {nodes} nodes; {models.notes}", style="dim"))
