"""The ``modelpool`` command: thin wrappers that parse, call the library and render.

``check-config``, ``demo`` and ``serve`` work on this machine; ``status``, ``models``,
``load`` and ``unload`` talk to a running server (``--url``, ``--api-key``), and so do
the version and rollout commands of ``cli_rollout`` (``versions``, ``rollout``...).

Exit codes, the same for every command, for scripts to rely on:

    0  ok
    1  the operation failed: a load or unload failed, the server answered 5xx
    2  invalid input: a bad option or URL, a config problem, the server answered 400/422
    3  cannot reach the server (is ``modelpool serve`` running at ``--url``?)
    4  unknown model (the server answered 404 ``model_not_found``)
    5  authentication failed (401: the API key is missing or wrong)
    130  interrupted (Ctrl-C; a load or unload goes on on the server)

Expected errors are one line on stderr (``error: ...``), never a stack trace.
``--json`` gives scripts the data on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

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

if TYPE_CHECKING:
    from modelpool.client import ClientError, ServerClient

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2
EXIT_UNREACHABLE, EXIT_UNKNOWN_MODEL, EXIT_AUTH = 3, 4, 5
EXIT_INTERRUPTED = 130

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
    elif len(issues) == 1 and not issues[0].path:  # the file itself: missing, not YAML
        issue = issues[0]
        where = issue.source if issue.line is None else f"{issue.source}:{issue.line}"
        _warn(f"error: {where}: {issue.message}")
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


# --- remote: status, models, load, unload ------------------------------------------

EXIT_CODES = (
    "Exit codes: 0 ok; 1 the operation failed (load failed, server error 5xx); "
    "2 invalid input (bad option or URL, 400/422); 3 cannot reach the server; "
    "4 unknown model (404); 5 authentication failed (401)."
)
POLL_SECONDS = 0.2
"""How often a live display asks the server for the model's state."""
ERROR_WIDTH = 48

UrlOption = Annotated[
    str,
    typer.Option(
        "--url", envvar="MODELPOOL_URL", help="The server's URL.", rich_help_panel="Server"
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="MODELPOOL_API_KEY",
        help="API key (the admin key when the server sets admin keys).",
        show_default=False,
        rich_help_panel="Server",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DEFAULT_URL = "http://127.0.0.1:8080"  # the client's DEFAULT_URL; httpx is imported lazily


@contextlib.contextmanager
def _remote(url: str, api_key: str | None, as_json: bool) -> Iterator[ServerClient]:
    """A client for the server at ``url``; its errors become one line and an exit code."""
    try:
        from modelpool.client import ClientError, ServerClient
    except ImportError as error:  # httpx comes with the server extra
        raise _fail(
            f"talking to a server needs the 'server' extra ({error.name} is missing): "
            "pip install 'modelpool[server]'",
            EXIT_INVALID,
        ) from None
    try:
        client = ServerClient(url, api_key)
    except ValueError as error:
        raise _remote_fail(str(error), EXIT_INVALID, as_json) from None
    try:
        with client:
            yield client
    except ClientError as error:
        message, code = _explain(error, client.url)
        raise _remote_fail(message, code, as_json, error) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", EXIT_INTERRUPTED) from None


def _explain(error: ClientError, url: str) -> tuple[str, int]:
    """The line to show for a client error, and the exit code it means."""
    from modelpool.client import ApiError, ServerUnreachable

    if isinstance(error, ServerUnreachable):
        return str(error), EXIT_UNREACHABLE
    if not isinstance(error, ApiError):
        return str(error), EXIT_FAILURE
    if error.status in (401, 403):
        return (
            f"authentication failed: {error.message} "
            "(give the key with --api-key or MODELPOOL_API_KEY)",
            EXIT_AUTH,
        )
    if error.status == 404 and error.code == "model_not_found":
        return error.message, EXIT_UNKNOWN_MODEL
    if error.status == 404:
        return f"{error.message} (is {url} a modelpool server?)", EXIT_INVALID
    if 400 <= error.status < 500:
        return error.message, EXIT_INVALID
    return error.message, EXIT_FAILURE


def _remote_fail(
    message: str, code: int, as_json: bool, error: ClientError | None = None
) -> typer.Exit:
    if as_json:
        status = getattr(error, "status", None)
        server_code = getattr(error, "code", None)
        shown = {"status": status, "code": server_code, "message": message, "exit_code": code}
        _print_json({"ok": False, "error": shown})
    return _fail(message, code)


def _state(view: dict[str, Any]) -> Text:
    state = str(view["status"])
    return Text(state, style=_STATE_STYLE.get(state, "dim"))


def _progress(view: dict[str, Any]) -> str:
    """A model's state as a live line shows it: ``loading``, ``unloading, 2 leases out``.

    Not ``waiting``: the admin load being watched is itself one of the waiters.
    """
    leases = int(view.get("leases") or 0)
    out_now = f", {leases} lease{'s' * (leases != 1)} out" if leases else ""
    return f"{view['status']}{out_now}"


def _shorten(text: str | None, width: int = ERROR_WIDTH) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


@app.command(epilog=EXIT_CODES)
def status(
    url: UrlOption = DEFAULT_URL, api_key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Show a running server's memory per device, strategy, queue and loaded models."""
    with _remote(url, api_key, as_json) as server:
        answer = server.status()
    if as_json:
        _print_json(answer)
        return
    out.print(_status_view(answer, server.url))


def _status_view(status: dict[str, Any], url: str) -> Group:
    queue = status["queue"]
    header = Text(
        f"{url}: strategy {status['strategy']}, "
        f"queue {queue['waiting']} waiting (max {queue['max']})"
    )
    memory = Table(title="memory", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("device", "budget", "used", "reserved", "free"):
        memory.add_column(column, justify="left" if column == "device" else "right", no_wrap=True)
    rows = list(status["memory_info"].items())
    if status.get("warm_memory", {}).get("budget"):
        rows.append(("host (warm)", status["warm_memory"]))
    for device, info in rows:
        used = int(info["committed"]) + int(info.get("leaving", 0))
        memory.add_row(
            device,
            _size(int(info["budget"])),
            _size(used),
            _size(int(info["reserved"])),
            _size(int(info["free"])),
        )
    resident = {
        model: info
        for model, info in status["model_resources"].items()
        if info["status"] not in ("unloaded", "failed")
    }
    if not resident:
        return Group(header, memory, Text("no model loaded"))
    models = Table(title="loaded models", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("model", "state", "device", "memory", "leases", "idle"):
        justify: Literal["left", "right"] = (
            "right" if column in ("memory", "leases", "idle") else "left"
        )
        models.add_column(column, justify=justify, no_wrap=True)
    for model, info in resident.items():
        idle = info.get("idle_seconds")
        models.add_row(
            _name(model, info),
            _state(info),
            str(info["device"] or "-"),
            _size(int(info["memory_bytes"])),
            str(info["leases"]),
            "-" if idle is None else f"{float(idle):.0f}s",
        )
    return Group(header, memory, models)


@app.command(epilog=EXIT_CODES)
def models(
    url: UrlOption = DEFAULT_URL, api_key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """List a running server's models: state, device, memory, leases and usage."""
    with _remote(url, api_key, as_json) as server:
        answer = server.models()
    if as_json:
        _print_json({"models": answer})
        return
    table = Table(caption="* pinned", caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = (
        "model",
        "state",
        "device",
        "memory",
        "leases",
        "loads",
        "reqs",
        "hit%",
        "last error",
    )
    for column in columns:
        justify: Literal["left", "right"] = (
            "left" if column in ("model", "state", "device", "last error") else "right"
        )
        # Only the last error gives way to a narrow terminal (cut short, on one line).
        table.add_column(column, justify=justify, no_wrap=column != "last error")
    for view in answer:
        table.add_row(
            _name(view["id"], view),
            _state(view),
            str(view["device"] or "-"),
            _size(int(view["memory_bytes"])) if view["memory_bytes"] else "-",
            str(view["leases"]),
            str(view["load_count"]),
            str(view["requests"]),
            f"{view['hit_rate']:.0%}" if view["requests"] else "-",
            Text(_shorten(view["last_error"]), "red", no_wrap=True, overflow="ellipsis"),
        )
    out.print(table)


ModelArgument = Annotated[str, typer.Argument(help="The model's id or alias.", show_default=False)]
TimeoutOption = Annotated[
    float | None,
    typer.Option(min=0.1, help="Give up waiting after this many seconds (default: no limit)."),
]


@app.command(epilog=EXIT_CODES)
def load(
    model: ModelArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once the server has started the load.")
    ] = False,
    timeout: TimeoutOption = None,
) -> None:
    """Load a model now (evicting others if needed) and wait until it is ready or failed.

    On a terminal a live line shows the model's state and the seconds elapsed.
    """
    with _remote(url, api_key, as_json) as server:
        before = server.model(model)  # an unknown model fails here, before anything starts
        model_id = before["id"]
        started = time.monotonic()
        if no_wait:
            view = server.load(model_id, wait=False)
        else:
            view = _wait_for(
                lambda: server.load(model_id, timeout=timeout),
                lambda: server.model(model_id),
                "load",
                model_id,
                as_json,
            )
    seconds = time.monotonic() - started
    already = before["status"] == "ready"
    if as_json:
        result = {"ok": True, "model": view, "seconds": round(seconds, 3)}
        _print_json(result | {"waited": not no_wait, "already_loaded": already})
    elif no_wait:
        out.print(Text(f"loading {model_id} in the background; 'modelpool models' follows it"))
    elif already:
        out.print(Text(f"{model_id} was already {view['status']}{_where(view)}"))
    else:
        out.print(Text(f"{model_id} loaded in {seconds:.2f}s: {view['status']}{_where(view)}"))


@app.command(epilog=EXIT_CODES)
def unload(
    model: ModelArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = None,
) -> None:
    """Unload a model once its leases are back (no new leases meanwhile), and report."""
    with _remote(url, api_key, as_json) as server:
        before = server.model(model)
        model_id = before["id"]
        started = time.monotonic()
        view = _wait_for(
            lambda: server.unload(model_id, timeout=timeout),
            lambda: server.model(model_id),
            "unload",
            model_id,
            as_json,
        )
    seconds = time.monotonic() - started
    if view["status"] == "failed":
        message = f"unloading {model_id} failed: {view['last_error'] or 'no reason given'}"
        raise _remote_fail(message, EXIT_FAILURE, as_json)
    was_loaded = before["status"] not in ("unloaded", "failed")
    if as_json:
        result = {"ok": True, "model": view, "seconds": round(seconds, 3)}
        _print_json(result | {"was_loaded": was_loaded})
    elif was_loaded:
        done = "unloaded" if view["status"] == "unloaded" else f"is {view['status']}"
        was = f"was {before['status']}{_where(before)}"
        out.print(Text(f"{model_id} {done} in {seconds:.2f}s: {was}"))
    else:
        out.print(Text(f"{model_id} was not loaded"))


def _where(view: dict[str, Any]) -> str:
    """`` on cuda:0 (4.0 GB)``: where a model is, and what it holds."""
    device = f" on {view['device']}" if view.get("device") else ""
    return f"{device} ({_size(int(view['memory_bytes']))})" if view.get("memory_bytes") else device


def _wait_for(
    call: Callable[[], dict[str, Any]],
    poll: Callable[[], dict[str, Any]],
    verb: str,
    model_id: str,
    as_json: bool,
) -> dict[str, Any]:
    """``call``'s answer; on a terminal (and without --json) with a live line meanwhile."""
    from modelpool.client import ServerTimeout

    try:
        if as_json or not out.is_terminal:
            return call()
        return _watch(call, poll, verb, model_id)
    except ServerTimeout:
        message = f"gave up waiting for the {verb} of {model_id}; the server goes on with it"
        raise _remote_fail(message, EXIT_FAILURE, as_json) from None


def _watch(
    call: Callable[[], dict[str, Any]],
    poll: Callable[[], dict[str, Any]],
    verb: str,
    model_id: str,
) -> dict[str, Any]:
    """``call`` on a worker thread while a spinner shows the elapsed time and ``poll``'s state.

    The call's answer (or error) is the outcome; polling only feeds the display, so a
    state seen between two polls never decides anything. The thread is a daemon: Ctrl-C
    leaves at once, and the server goes on with the operation.
    """
    from modelpool.client import ClientError

    answer: list[dict[str, Any]] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            answer.append(call())
        except BaseException as error:  # handed to the main thread, raised there
            failure.append(error)

    # One httpx client serves both threads: its connection pool is thread-safe.
    worker = threading.Thread(target=run, name=f"modelpool-{verb}", daemon=True)
    title = f"{verb}ing {model_id}"
    started, shown = time.monotonic(), "…"
    worker.start()
    try:
        with out.status(Text(f"{title}…"), spinner="dots") as spinner:
            while True:
                worker.join(POLL_SECONDS)
                if not worker.is_alive():
                    break
                with contextlib.suppress(ClientError):  # the call itself reports failures
                    shown = _progress(poll())
                spinner.update(Text(f"{title}: {shown}, {time.monotonic() - started:.1f}s"))
    except KeyboardInterrupt:
        message = f"interrupted; the server goes on with the {verb} of {model_id}"
        raise _fail(message, EXIT_INTERRUPTED) from None
    if failure:
        raise failure[0]
    return answer[0]


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
    "warm": "cyan",
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


# The version, rollout and simulate commands: importing a module registers them on ``app``.
# It imports what it shares from this module, hence last.
from modelpool import cli_rollout, cli_simulate  # noqa: E402, F401
