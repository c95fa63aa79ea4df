"""``modelpool version | check-config | serve``: the commands about this machine's
config and server (no ``--url``: nothing here talks to a running server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from modelpool import __version__
from modelpool.cli.shared import (
    EXIT_FAILURE,
    EXIT_INVALID,
    JsonOption,
    app,
    fail,
    out,
    print_json,
    size,
    warn,
)
from modelpool.config import Config
from modelpool.errors import ConfigError, ConfigIssue, ModelPoolError


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
        print_json({"ok": False, "issues": shown})
    elif len(issues) == 1 and not issues[0].path:  # the file itself: missing, not YAML
        issue = issues[0]
        where = issue.source if issue.line is None else f"{issue.source}:{issue.line}"
        warn(f"error: {where}: {issue.message}")
    else:
        count = len(issues)
        warn(f"{file}: invalid configuration ({count} problem{'s' * (count != 1)}):")
        for issue in issues:
            warn(f"  {issue}")


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="The YAML config file to validate.")],
    as_json: JsonOption = False,
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
    budgets = {device: budget for device, budget in config.pool.budgets.items()}
    if as_json:
        print_json(
            {
                "ok": True,
                "issues": [],
                "models": len(config.models),
                "strategy": config.pool.strategy,
                "budgets": budgets,
            }
        )
        return
    shown = ", ".join(f"{d}={size(b)}" for d, b in budgets.items()) or "none"
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
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Apply every change of the config file within a second (as SIGHUP)."
        ),
    ] = False,
    on_ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Serve on Ray Serve: one pool per replica (the config's cluster: section), "
            "our request router in front. Needs the 'ray' extra.",
        ),
    ] = False,
    address: Annotated[
        str | None,
        typer.Option(
            help="With --ray: the cluster to deploy on ('auto': the one `ray start` runs "
            "here; ray://HOST:10001: a remote one). Default: start a local Ray.",
        ),
    ] = None,
) -> None:
    """Run the OpenAI-compatible server (the embedded default models without --config).

    SIGHUP (or 'modelpool reload') reads the config file again and applies what changed
    without a restart; --watch does it whenever the file changes. With --ray the same
    config serves on a Ray cluster (docs/cluster.md) until Ctrl-C.
    """
    if watch and config is None:
        raise fail("--watch needs a config file to watch: pass --config FILE", EXIT_INVALID)
    if address is not None and not on_ray:
        raise fail("--address is for --ray: pass --ray too", EXIT_INVALID)
    if on_ray:
        if watch:
            raise fail("--watch is not supported with --ray", EXIT_INVALID)
        _serve_on_ray(config, address, host, port)
        return
    try:
        from modelpool.bootstrap import load_config
        from modelpool.http.serve import InsecureBind
        from modelpool.http.serve import serve as run_server
    except ImportError as error:  # the server extra is missing
        raise fail(
            f"the server needs the 'server' extra ({error.name} is missing): "
            "pip install 'modelpool[server]'",
            EXIT_INVALID,
        ) from None
    try:
        loaded = load_config(config)
        run_server(loaded, host=host, port=port, insecure=insecure, watch=watch)
    except ConfigError as error:
        _report_issues(config or Path("<embedded default>"), error.issues, False)
        raise typer.Exit(EXIT_INVALID) from None
    except InsecureBind as error:
        raise fail(str(error), EXIT_INVALID) from None
    except ModelPoolError as error:
        raise fail(str(error), EXIT_FAILURE) from None


def _serve_on_ray(
    config: Path | None, address: str | None, host: str | None, port: int | None
) -> None:
    """``serve --ray``: deploy the pool on Ray Serve and serve until Ctrl-C."""
    try:
        from modelpool.ray.deployment import serve_on_ray
        from modelpool.ray.replica import ConfigText
    except ImportError as error:  # the ray (or server) extra is missing
        raise fail(
            f"--ray needs the 'ray' extra ({error.name} is missing): "
            "pip install 'modelpool[server,ray]'",
            EXIT_INVALID,
        ) from None
    try:
        serve_on_ray(ConfigText.of_file(config), address=address, host=host, port=port)
    except ConfigError as error:
        _report_issues(config or Path("<embedded default>"), error.issues, False)
        raise typer.Exit(EXIT_INVALID) from None
    except OSError as error:
        raise fail(f"cannot read {config}: {error.strerror or error}", EXIT_INVALID) from None
    except ModelPoolError as error:
        raise fail(str(error), EXIT_FAILURE) from None
