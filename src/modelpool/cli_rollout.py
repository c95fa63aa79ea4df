"""``modelpool versions | register | unregister | rollout | rollout-status | rollouts |
rollback | abort | alerts``: a running server's model versions and rollouts.

The commands are registered on ``cli.app`` (``cli`` imports this module last) and
share the other remote commands' options (``--url``, ``--api-key``, ``--json``) and
exit codes, read for these routes: 4 is an unknown model, version or operation (any
404 from a route that exists), 2 a request the server refused (409) or found invalid
(422), each problem it listed on its own line under an ``error: ...`` line.

How the answers look (tables, one-line summaries) is ``cli_views``'s part.

``--set KEY=VALUE`` values are read as YAML, as the config file reads them:
``n_ctx=4096`` is a number, ``period=20s`` a string, ``defaults={temperature: 1.0}``
a mapping (quote it for the shell).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import RenderableType
from rich.text import Text

from modelpool import cli_views as views
from modelpool.cli import (
    DEFAULT_URL,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_UNKNOWN_MODEL,
    JsonOption,
    KeyOption,
    ModelArgument,
    UrlOption,
    _explain,
    _fail,
    _print_json,
    _remote,
    _remote_fail,
    _warn,
    app,
    out,
)

if TYPE_CHECKING:
    from modelpool.client import ApiError, ServerClient

EXIT_CODES = (
    "Exit codes: 0 ok; 1 the operation failed (a rollout rolled back, aborted or failed; "
    "server error 5xx); 2 invalid input or refused (bad option, 400/409/422); "
    "3 cannot reach the server; 4 unknown model, version or operation (404); "
    "5 authentication failed (401)."
)
PANEL = "Versions and rollouts"
FOLLOW_SECONDS = 0.5
"""How often a followed rollout asks the server how it is going."""
TICK_SECONDS = 0.1
"""How often the live line's clock moves on."""
ENDED = frozenset({"completed", "rolled_back", "aborted", "failed"})
STRATEGIES = ("immediate", "gradual", "ab", "canary")

VersionArgument = Annotated[
    str, typer.Argument(help="The version's name (v2, 2024-06.q4...).", show_default=False)
]
OperationArgument = Annotated[
    str,
    typer.Argument(help="The operation's id (op-...), as 'modelpool rollouts' lists it.",
                   show_default=False),
]  # fmt: skip
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="A setting, its value read as YAML (repeat it: --set a=1 --set b=20s).",
        show_default=False,
    ),
]
NoWaitOption = Annotated[
    bool, typer.Option("--no-wait", help="Return once the server has started it.")
]


# --- --set KEY=VALUE ----------------------------------------------------------------


class _ValueLoader(yaml.SafeLoader):
    """YAML as the config file reads it, except that dates stay strings (JSON has none)."""


_ValueLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_settings(pairs: Sequence[str], option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a dict, each value read as YAML: ``4096`` an int, ``0.5`` a
    float, ``20s`` and ``hello`` strings, ``{temperature: 1.0}`` a mapping, ``[a, b]`` a
    list, an empty value null. A later pair replaces an earlier one with the same key.
    ``ValueError`` names the pair that is wrong."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, equals, raw = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ValueError(f"{option} expects KEY=VALUE, got {pair!r}")
        try:
            settings[key] = yaml.load(raw, Loader=_ValueLoader)  # a SafeLoader
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ValueError(f"{option} {key}: {raw!r} is not a YAML value ({problem})") from None
    return settings


def _settings(pairs: Sequence[str] | None, as_json: bool) -> dict[str, Any]:
    try:
        return parse_settings(pairs or ())
    except ValueError as error:
        raise _remote_fail(str(error), EXIT_INVALID, as_json) from None


# --- talking to the server ----------------------------------------------------------


@contextlib.contextmanager
def _admin(
    url: str, api_key: str | None, as_json: bool, doing: str | None = None
) -> Iterator[ServerClient]:
    """``cli._remote``, with the server's refusals read for these routes: a 404 is an
    unknown model, version or operation (exit 4); a 409 or 422 lists every problem
    under ``doing`` (exit 2)."""
    with _remote(url, api_key, as_json) as server:
        from modelpool.client import ApiError

        try:
            yield server
        except ApiError as error:
            raise _api_failure(error, server.url, as_json, doing) from None


def _api_failure(error: ApiError, url: str, as_json: bool, doing: str | None) -> typer.Exit:
    problems = error.problems
    if error.status in (401, 403) or error.status >= 500:
        message, code = _explain(error, url)
    elif error.status == 405 or (
        error.status == 404 and (error.kind is None or error.message == "Not Found")
    ):  # the route itself is missing, not the thing it names
        message = (
            f"{error.message}: {url} does not know this route "
            "(is it a modelpool server with versions and rollouts?)"
        )
        code = EXIT_INVALID
    elif error.status == 404:
        message, code = error.message, EXIT_UNKNOWN_MODEL
    else:
        message, code = error.message, EXIT_INVALID
    if as_json:
        shown = {"status": error.status, "code": error.code, "message": message}
        _print_json({"ok": False, "error": shown | {"problems": problems, "exit_code": code}})
    if not problems or code != EXIT_INVALID:
        return _fail(message, code)
    _list_problems(doing or message, problems)
    return typer.Exit(code)


def _list_problems(doing: str, problems: Sequence[str]) -> None:
    """``error: DOING (N problems):`` on stderr, then each problem on a line of its own."""
    count = len(problems)
    _warn(f"error: {doing} ({count} problem{'s' * (count != 1)}):")
    for problem in problems:
        _warn(f"  {problem}")


# --- printing the answer ------------------------------------------------------------


def _answer(
    url: str,
    api_key: str | None,
    as_json: bool,
    ask: Callable[[ServerClient], Any],
    show: Callable[[Any], RenderableType],
    *,
    doing: str | None = None,
    key: str | None = None,
) -> None:
    """Ask the server (``ask``) and print its answer: with ``--json`` as it came (under
    ``key`` when given), else as ``show`` renders it; a ``str`` is one line (``_say``)."""
    with _admin(url, api_key, as_json, doing) as server:
        answer = ask(server)
    if as_json:
        _print_json({key: answer} if key else answer)
        return
    shown = show(answer)
    if isinstance(shown, str):
        _say(shown)
    else:
        out.print(shown)


def _say(line: str) -> None:
    """One line on stdout, never wrapped: a script or a pager sees it whole."""
    out.print(Text(line), soft_wrap=True)


def _reported(
    op: dict[str, Any], show: Callable[[dict[str, Any]], str], as_json: bool, waited: bool = False
) -> None:
    """An operation reported without following it (to its end, or at all): ``--json``
    prints it, else ``show`` says it in one line."""
    if as_json:
        _print_json({"ok": True, "operation": op, "waited": waited})
    else:
        _say(show(op))


# --- versions, register, unregister -------------------------------------------------


@app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)
def versions(
    model: ModelArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a model's versions: state, share of traffic, origin, author; its rollout."""
    _answer(url, api_key, as_json, lambda server: server.versions(model), views.versions_view)


@app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)
def register(
    model: ModelArgument,
    version: VersionArgument,
    settings: SetOption = None,
    memory: Annotated[
        str | None,
        typer.Option(
            help="The version's memory (2GB, 512MiB); else the model's.", show_default=False
        ),
    ] = None,
    author: Annotated[str | None, typer.Option(help="Who made it.", show_default=False)] = None,
    notes: Annotated[str | None, typer.Option(help="What it is.", show_default=False)] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a new version of a model: the model's settings with --set over them.

    For example --set n_ctx=4096 --set "defaults={temperature: 1.0}". The version
    takes no traffic until a rollout moves some to it.
    """
    values = _settings(settings, as_json)
    if memory is not None:
        values["memory"] = memory

    def registered(view: dict[str, Any]) -> str:
        name = view.get("name") or f"{model}@{version}"
        by = f", by {view['author']}" if view.get("author") else ""
        return (
            f"registered {name} ({view.get('origin') or 'runtime'}{by}): {view.get('state')}, "
            f"{views.percent(view.get('weight'))} of traffic; "
            f"'modelpool rollout {model} {view['version']}' moves traffic to it"
        )

    _answer(
        url, api_key, as_json,
        lambda server: server.register_version(model, version, values, author=author, notes=notes),
        registered,
        doing=f"cannot register {model}@{version}",
    )  # fmt: skip


@app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)
def unregister(
    model: ModelArgument,
    version: VersionArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a version registered at run time (one that carries no traffic)."""
    _answer(
        url, api_key, as_json,
        lambda server: server.unregister_version(model, version),
        lambda answer: f"removed {answer.get('model', model)}@{answer.get('version', version)}",
        doing=f"cannot remove {model}@{version}",
    )  # fmt: skip


# --- rollout and following one ------------------------------------------------------


@app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)
def rollout(
    model: ModelArgument,
    version: Annotated[
        str, typer.Argument(help="The version to move traffic to.", show_default=False)
    ],
    strategy: Annotated[
        str,
        typer.Option("--strategy", "-s", metavar="|".join(STRATEGIES), help="How traffic moves."),
    ] = "immediate",
    settings: SetOption = None,
    no_wait: NoWaitOption = False,
    check: Annotated[
        bool, typer.Option("--check", help="Only ask the server whether it would start it.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move a model's traffic to VERSION and follow the rollout until it ends.

    Strategy settings come with --set: canary takes initial_percentage,
    step_percentage and period (--set period=20s); gradual steps and duration; ab
    percentage, duration and then=promote|revert. Exits 0 once completed, 1 when
    rolled back, aborted or failed (with the reason), 2 when refused (every problem).
    """
    config = _settings(settings, as_json)
    doing = f"cannot roll out {model} {version} ({strategy})"
    if check:
        with _admin(url, api_key, as_json, doing) as server:
            answer = server.validate_rollout(model, version, strategy, config)
        _checked(answer, doing, as_json)
        return
    started = time.monotonic()
    with _admin(url, api_key, as_json, doing) as server:
        op = server.start_rollout(model, version, strategy, config)
        if not no_wait:
            op = _follow(server, op, as_json)
    if no_wait:
        _reported(op, _started, as_json)
    else:
        _ended(op, time.monotonic() - started, as_json)


def _started(op: dict[str, Any]) -> str:
    return (
        f"started {views.summary_line(op)}; "
        f"'modelpool rollout-status {op['operation_id']}' follows it"
    )


def _checked(answer: dict[str, Any], doing: str, as_json: bool) -> None:
    errors = [str(error) for error in answer.get("errors") or []]
    valid = bool(answer.get("valid")) and not errors
    if as_json:
        _print_json(answer)
    elif valid:
        _say("ok: the server would start this rollout")
    else:
        _list_problems(doing, errors)
    if not valid:
        raise typer.Exit(EXIT_INVALID)


def _follow(server: ServerClient, op: dict[str, Any], as_json: bool) -> dict[str, Any]:
    """``op`` polled until it ends. Each new entry of its history is a line (not with
    ``--json``); on a terminal a live line shows its status, share, progress and time."""
    op_id = op["operation_id"]
    started, printed = time.monotonic(), 0
    live = out.is_terminal and not as_json
    spinner = out.status(Text(f"rollout {op_id}…"), spinner="dots")
    try:
        with spinner if live else contextlib.nullcontext():
            while True:
                history = [] if as_json else list(op.get("history") or [])
                for entry in history[printed:]:
                    out.print(views.history_line(entry), soft_wrap=True)
                printed = max(printed, len(history))
                if op["status"] in ENDED:
                    return op
                poll_at = time.monotonic() + FOLLOW_SECONDS
                while (now := time.monotonic()) < poll_at:
                    if live:  # the seconds tick on between two polls
                        line = f"rollout {views.summary_line(op)}, {now - started:.1f}s"
                        spinner.update(Text(line))
                    time.sleep(min(TICK_SECONDS, poll_at - now))
                op = server.rollout(op_id)
    except KeyboardInterrupt:
        message = (
            f"interrupted; rollout {op_id} goes on on the server "
            f"('modelpool abort {op_id}' stops it)"
        )
        raise _fail(message, EXIT_INTERRUPTED) from None


def _ended(op: dict[str, Any], seconds: float, as_json: bool) -> None:
    """Report a followed operation that ended; exit 1 unless it completed."""
    ok = op["status"] == "completed"
    if as_json:
        _print_json({"ok": ok, "operation": op, "waited": True, "seconds": round(seconds, 3)})
    if not ok:
        status = str(op["status"]).replace("_", " ")
        raise _fail(
            f"rollout {op['operation_id']} {status}: {op.get('reason') or 'no reason given'}",
            EXIT_FAILURE,
        )
    if not as_json:
        why = op.get("reason") or f"{op['target']} serves {op['model']}"
        _say(f"rollout {op['operation_id']} completed in {seconds:.1f}s: {why}")


# --- rollout-status, rollouts -------------------------------------------------------


@app.command("rollout-status", epilog=EXIT_CODES, rich_help_panel=PANEL)
def rollout_status(
    operation: OperationArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one rollout: status, share of traffic, progress, steps and history."""
    _answer(url, api_key, as_json, lambda server: server.rollout(operation), views.operation_view)


@app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)
def rollouts(
    model: Annotated[
        str | None, typer.Argument(help="Only this model's rollouts.", show_default=False)
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List rollouts, newest first: model, versions, strategy, status, share, progress."""
    none = f"no rollouts{f' of {model}' if model else ''}"
    _answer(
        url, api_key, as_json,
        lambda server: server.rollouts(model),
        lambda operations: views.rollouts_table(operations) if operations else none,
        key="operations",
    )  # fmt: skip


# --- rollback, abort ----------------------------------------------------------------


@app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)
def rollback(
    model: ModelArgument,
    no_wait: NoWaitOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Go back to the previous version: end the running rollout, or switch back.

    A running rollout ends at once, its traffic back on its source; else the model
    switches back to where its last completed rollout started, followed like rollout.
    """
    with _admin(url, api_key, as_json, f"cannot roll back {model}") as server:
        started = time.monotonic()
        op = server.rollback(model)
        if not no_wait and op["status"] not in ENDED:
            op = _follow(server, op, as_json)
    if op["status"] == "rolled_back":  # the running rollout ended: traffic on its source
        _reported(op, lambda op: views.back_line("rolled back", op), as_json, waited=not no_wait)
    elif no_wait and op["status"] not in ENDED:
        _reported(op, lambda op: f"rolling back: started {views.summary_line(op)}", as_json)
    else:  # a switch back to the previous version
        _ended(op, time.monotonic() - started, as_json)


@app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)
def abort(
    operation: OperationArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop a rollout that has not ended: its model's traffic goes back to its source."""
    _answer(
        url, api_key, as_json,
        lambda server: server.abort_rollout(operation),
        lambda op: views.back_line("aborted", op),
        doing=f"cannot abort {operation}",
    )  # fmt: skip


# --- alerts -------------------------------------------------------------------------


@app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)
def alerts(
    url: UrlOption = DEFAULT_URL, api_key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """List the active health alerts: which model version, how bad, and why."""
    _answer(
        url, api_key, as_json,
        lambda server: server.alerts(),
        lambda active: views.alerts_table(active) if active else "no active alerts",
        key="alerts",
    )  # fmt: skip
