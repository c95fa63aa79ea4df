"""The ``modelpool`` command: thin wrappers that parse, call the library and render.

Exit codes: 0 ok, 2 invalid input or config, 1 any other failure. Expected errors are
one clear message on stderr, never a stack trace. ``--json`` gives scripts the data.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from modelpool import __version__
from modelpool.config import Config
from modelpool.demo import DemoProgress, run_demo
from modelpool.errors import ConfigError, ConfigIssue, ModelPoolError, PluginNotFound
from modelpool.plugins import POLICIES
from modelpool.units import format_size

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2

app = typer.Typer(
    name="modelpool",
    help="Run more AI models than fit in your GPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)


def _fail(message: str, code: int) -> typer.Exit:
    _warn(f"error: {message}")
    return typer.Exit(code)


def _warn(line: str) -> None:
    # Plain text, never wrapped: "file:line: path: message" stays one greppable line.
    typer.echo(line, err=True)


def _size(size: int) -> str:
    """Sizes as the user probably wrote them: GiB for binary round numbers, else GB/MB."""
    if size % 1024**2 == 0:
        return format_size(size)
    if size >= 1000**3:
        return f"{size / 1000**3:.1f} GB"
    return f"{size / 1000**2:.1f} MB"


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"modelpool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Run more AI models than fit in your GPU."""


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"modelpool {__version__}")


# --- check-config -------------------------------------------------------------------


def _report_issues(file: Path, issues: list[ConfigIssue], as_json: bool) -> None:
    if as_json:
        shown = [
            {"source": i.source, "line": i.line, "path": i.path, "message": i.message}
            | {"text": str(i) if i.path else f"{i.source}: {i.message}"}
            for i in issues
        ]
        _print_json({"ok": False, "issues": shown})
    elif len(issues) == 1 and not issues[0].path:  # the file itself: missing, unreadable
        _warn(f"error: {issues[0].source}: {issues[0].message}")
    else:
        count = len(issues)
        _warn(f"{file}: invalid configuration ({count} problem{'s' * (count != 1)}):")
        for issue in issues:
            _warn(f"  {issue}")


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="The YAML config file to validate.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate a config file; list every problem with its file, line and key path."""
    try:
        if not file.is_file():
            problem = "is not a file" if file.exists() else "no such file"
            raise ConfigError([ConfigIssue(str(file), "", problem)])
        config = Config.load(file)
    except ConfigError as error:
        _report_issues(file, error.issues, as_json)
        raise typer.Exit(EXIT_INVALID) from None
    budgets = {device: size for device, size in config.pool.budgets.items()}
    if as_json:
        _print_json(
            {
                "ok": True,
                "issues": [],
                "models": len(config.models),
                "strategy": config.pool.strategy,
                "budgets": budgets,
            }
        )
        return
    shown = ", ".join(f"{d}={_size(b)}" for d, b in budgets.items()) or "none"
    count = len(config.models)
    models = f"{count} model{'s' * (count != 1)}"
    out.print(Text(f"ok: {models}, strategy {config.pool.strategy}, budgets {shown}"))


# --- serve --------------------------------------------------------------------------


@app.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", envvar="MODELPOOL_CONFIG", help="YAML config (default: embedded)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default 8080).")] = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback address without an API key.")
    ] = False,
) -> None:
    """Run the OpenAI-compatible server (the embedded default models without --config)."""
    try:
        from modelpool.bootstrap import load_config
        from modelpool.http.serve import InsecureBind
        from modelpool.http.serve import serve as run_server
    except ImportError as error:  # the server extra is missing
        raise _fail(
            f"the server needs the 'server' extra ({error.name} is missing): "
            "pip install 'modelpool[server]'",
            EXIT_INVALID,
        ) from None
    try:
        loaded = load_config(config)
        run_server(loaded, host=host, port=port, insecure=insecure)
    except ConfigError as error:
        _report_issues(config or Path("<embedded default>"), error.issues, False)
        raise typer.Exit(EXIT_INVALID) from None
    except InsecureBind as error:
        raise _fail(str(error), EXIT_INVALID) from None
    except ModelPoolError as error:
        raise _fail(str(error), EXIT_FAILURE) from None


# --- demo ---------------------------------------------------------------------------


@app.command()
def demo(
    seconds: Annotated[
        float, typer.Option(min=0.1, help="How long the workload sends requests.")
    ] = 8.0,
    strategy: Annotated[str, typer.Option(help="Eviction strategy (see README).")] = "hybrid",
    seed: Annotated[int, typer.Option(help="Seed of the random workload.")] = 0,
    clients: Annotated[int, typer.Option(min=1, max=64, help="Concurrent clients.")] = 4,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final status as JSON.")
    ] = False,
) -> None:
    """Watch the pool swap fake models under a 16 GiB budget (no GPU, no weights)."""
    if strategy not in POLICIES.names():
        raise _fail(str(PluginNotFound(POLICIES.kind, strategy, POLICIES.names())), EXIT_INVALID)
    try:
        if as_json:
            status = asyncio.run(run_demo(seconds, strategy=strategy, seed=seed, clients=clients))
            _print_json(status)
            return
        out.print(
            f"modelpool demo: {clients} clients, {seconds:g} s, strategy {strategy}, seed {seed}"
            " (fake models, no GPU needed)"
        )
        with Live(console=out, refresh_per_second=8, transient=True) as live:
            status = asyncio.run(
                run_demo(
                    seconds,
                    strategy=strategy,
                    seed=seed,
                    clients=clients,
                    on_update=lambda progress: live.update(_live_view(progress)),
                )
            )
    except (ConfigError, PluginNotFound) as error:
        raise _fail(str(error), EXIT_INVALID) from None
    except ModelPoolError as error:
        raise _fail(str(error), EXIT_FAILURE) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    out.print(_summary(status))


_STATE_STYLE = {
    "ready": "green",
    "in_use": "green",
    "loading": "yellow",
    "unloading": "magenta",
    "failed": "red",
}


def _caption(models: dict[str, Any]) -> str:
    notes = ["* pinned"]
    notes += [f"{m}: ttl {info['ttl']:g}s" for m, info in models.items() if info["ttl"]]
    groups: dict[str, list[str]] = {}
    for model, info in models.items():
        if info["group"]:
            groups.setdefault(info["group"], []).append(model)
    notes += [f"group {g}: {', '.join(members)}" for g, members in groups.items()]
    return "; ".join(notes)


def _name(model: str, info: dict[str, Any]) -> str:
    return model + (" *" if info["pinned"] else "")


def _live_view(progress: DemoProgress) -> Group:
    status = progress.status
    models = status["model_resources"]
    memory = "  ".join(
        f"{device} {format_size(m['committed'] + m['reserved'])} of {format_size(m['budget'])}"
        for device, m in status["memory_info"].items()
    )
    header = Text(
        f"strategy {status['strategy']}, "
        f"{progress.elapsed:.1f}s of {progress.seconds:g}s, {progress.requests} requests "
        f"({progress.completed} done, {progress.failed} failed), {memory}"
    )
    table = Table(
        caption=_caption(models), caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for column in ("model", "state", "memory", "leases", "loads", "hits", "misses"):
        justify: Literal["left", "right"] = "left" if column in ("model", "state") else "right"
        table.add_column(column, justify=justify, no_wrap=True)
    for model, info in models.items():
        state = str(info["status"])
        table.add_row(
            _name(model, info),
            Text(state, style=_STATE_STYLE.get(state, "dim")),
            format_size(info["memory_bytes"]),
            str(info["leases"]),
            str(info["load_count"]),
            str(info["hits"]),
            str(info["misses"]),
        )
    events = Table(title="recent events", title_justify="left", show_header=False, box=None)
    for event in progress.events:
        detail = event.detail
        note = detail.get("reason") or detail.get("error") or detail.get("held_by") or ""
        if "seconds" in detail and not note:
            note = f"in {float(detail['seconds']):.2f}s"
        events.add_row(
            f"{event.at - progress.started:5.1f}s", str(event.kind), event.model_id or "", str(note)
        )
    return Group(header, table, events)


def _summary(status: dict[str, Any]) -> Group:
    run = status["demo"]
    evictions = ", ".join(f"{reason} {n}" for reason, n in sorted(run["evictions"].items()))
    lines = [
        f"{run['requests']} requests ({run['completed']} completed, {run['failed']} failed)"
        f" from {run['clients']} clients in {run['elapsed']:.1f}s;"
        f" strategy {run['strategy']}, seed {run['seed']}",
        f"hit rate {run['hit_rate']:.0%} ({run['hits']} hits, {run['misses']} misses);"
        f" {run['loads']} loads; unloads by reason: {evictions or 'none'}",
    ]
    if run["errors"]:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in run["errors"].items()))
    models = status["model_resources"]
    table = Table(
        title="per model",
        title_justify="left",
        caption=_caption(models),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns = ("model", "memory", "reqs", "hit%", "loads", "load s", "unloads", "p50/p95 ms")
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
    for model, info in models.items():
        table.add_row(
            _name(model, info),
            format_size(info["memory_bytes"]),
            str(info["requests"]),
            f"{info['hit_rate']:.0%}" if info["requests"] else "-",
            str(info["load_count"]),
            f"{info['load_seconds_total']:.1f}",
            str(info["unload_count"]),
            f"{info['p50_response_time'] * 1000:.0f}/{info['p95_response_time'] * 1000:.0f}",
        )
    return Group(Text("summary", style="bold"), *(Text(line) for line in lines), table)


def main() -> None:
    """Entry point of the ``modelpool`` script and ``python -m modelpool``."""
    app()
