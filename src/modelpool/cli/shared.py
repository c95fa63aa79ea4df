"""What every command shares: the Typer ``app``, exit codes, the ``--url``,
``--api-key`` and ``--json`` options, output helpers, and ``remote()``, a client for
a running server whose errors become one line and an exit code.

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

This module imports no other module of the CLI: every command module imports it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from modelpool import __version__
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


# --- the options every command spells the same way ---------------------------------

DEFAULT_URL = "http://127.0.0.1:8080"  # the client's DEFAULT_URL; httpx is imported lazily

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
StatusJsonOption = Annotated[bool, typer.Option("--json", help="Print the final status as JSON.")]
"""``--json`` for a command whose result is the pool's status once it has run."""
ModelArgument = Annotated[str, typer.Argument(help="The model's id or alias.", show_default=False)]


# --- output -------------------------------------------------------------------------

STATE_STYLE = {
    "ready": "green",
    "in_use": "green",
    "loading": "yellow",
    "unloading": "magenta",
    "failed": "red",
    "warm": "cyan",
}
"""The colour of a model's (or a version's) state in a table."""
ERROR_WIDTH = 48


def fail(message: str, code: int) -> typer.Exit:
    """``error: MESSAGE`` on stderr, and the exit to raise with ``code``."""
    warn(f"error: {message}")
    return typer.Exit(code)


def warn(line: str) -> None:
    # Plain text, never wrapped: "file:line: path: message" stays one greppable line.
    typer.echo(line, err=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def size(value: int) -> str:
    """Sizes as the user probably wrote them: GiB for binary round numbers, else GB/MB."""
    if value % 1024**2 == 0:
        return format_size(value)
    if value >= 1000**3:
        return f"{value / 1000**3:.1f} GB"
    return f"{value / 1000**2:.1f} MB"


def shorten(text: str | None, width: int = ERROR_WIDTH) -> str:
    """``text`` on one line, cut to ``width`` with an ellipsis."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


# --- talking to a server ------------------------------------------------------------


@contextlib.contextmanager
def remote(url: str, api_key: str | None, as_json: bool) -> Iterator[ServerClient]:
    """A client for the server at ``url``; its errors become one line and an exit code."""
    try:
        from modelpool.client import ClientError, ServerClient
    except ImportError as error:  # httpx comes with the server extra
        raise fail(
            f"talking to a server needs the 'server' extra ({error.name} is missing): "
            "pip install 'modelpool[server]'",
            EXIT_INVALID,
        ) from None
    try:
        client = ServerClient(url, api_key)
    except ValueError as error:
        raise remote_fail(str(error), EXIT_INVALID, as_json) from None
    try:
        with client:
            yield client
    except ClientError as error:
        message, code = explain(error, client.url)
        raise remote_fail(message, code, as_json, error) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None


def explain(error: ClientError, url: str) -> tuple[str, int]:
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


def remote_fail(
    message: str, code: int, as_json: bool, error: ClientError | None = None
) -> typer.Exit:
    """``fail``, and with ``--json`` the error as JSON on stdout too."""
    if as_json:
        status = getattr(error, "status", None)
        server_code = getattr(error, "code", None)
        shown = {"status": status, "code": server_code, "message": message, "exit_code": code}
        print_json({"ok": False, "error": shown})
    return fail(message, code)
