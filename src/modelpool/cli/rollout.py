"""``modelpool rollout | rollout-status | rollouts | rollback | abort | alerts``: a
running server's rollouts and health alerts.

Their options and exit codes are ``rollout_shared``'s: ``rollout`` exits 0 once the
rollout completed, 1 when it rolled back, aborted or failed, 2 when the server refused
it. How the answers look is ``rollout_views``'s part.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from modelpool.cli import rollout_views as views
from modelpool.cli.rollout_shared import (
    EXIT_CODES,
    PANEL,
    SetOption,
    admin,
    answer,
    list_problems,
    say,
    settings_option,
)
from modelpool.cli.shared import (
    DEFAULT_URL,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    JsonOption,
    KeyOption,
    ModelArgument,
    UrlOption,
    app,
    fail,
    out,
    print_json,
)

if TYPE_CHECKING:
    from modelpool.client import ServerClient

FOLLOW_SECONDS = 0.5
"""How often a followed rollout asks the server how it is going."""
TICK_SECONDS = 0.1
"""How often the live line's clock moves on."""
ENDED = frozenset({"completed", "rolled_back", "aborted", "failed"})
STRATEGIES = ("immediate", "gradual", "ab", "canary")

OperationArgument = Annotated[
    str,
    typer.Argument(help="The operation's id (op-...), as 'modelpool rollouts' lists it.",
                   show_default=False),
]  # fmt: skip
NoWaitOption = Annotated[
    bool, typer.Option("--no-wait", help="Return once the server has started it.")
]


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
    config = settings_option(settings, as_json)
    doing = f"cannot roll out {model} {version} ({strategy})"
    if check:
        with admin(url, api_key, as_json, doing) as server:
            verdict = server.validate_rollout(model, version, strategy, config)
        _checked(verdict, doing, as_json)
        return
    started = time.monotonic()
    with admin(url, api_key, as_json, doing) as server:
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


def _reported(
    op: dict[str, Any], show: Callable[[dict[str, Any]], str], as_json: bool, waited: bool = False
) -> None:
    """An operation reported without following it (to its end, or at all): ``--json``
    prints it, else ``show`` says it in one line."""
    if as_json:
        print_json({"ok": True, "operation": op, "waited": waited})
    else:
        say(show(op))


def _checked(verdict: dict[str, Any], doing: str, as_json: bool) -> None:
    errors = [str(error) for error in verdict.get("errors") or []]
    valid = bool(verdict.get("valid")) and not errors
    if as_json:
        print_json(verdict)
    elif valid:
        say("ok: the server would start this rollout")
    else:
        list_problems(doing, errors)
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
        raise fail(message, EXIT_INTERRUPTED) from None


def _ended(op: dict[str, Any], seconds: float, as_json: bool) -> None:
    """Report a followed operation that ended; exit 1 unless it completed."""
    ok = op["status"] == "completed"
    if as_json:
        print_json({"ok": ok, "operation": op, "waited": True, "seconds": round(seconds, 3)})
    if not ok:
        status = str(op["status"]).replace("_", " ")
        raise fail(
            f"rollout {op['operation_id']} {status}: {op.get('reason') or 'no reason given'}",
            EXIT_FAILURE,
        )
    if not as_json:
        why = op.get("reason") or f"{op['target']} serves {op['model']}"
        say(f"rollout {op['operation_id']} completed in {seconds:.1f}s: {why}")


# --- rollout-status, rollouts -------------------------------------------------------


@app.command("rollout-status", epilog=EXIT_CODES, rich_help_panel=PANEL)
def rollout_status(
    operation: OperationArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one rollout: status, share of traffic, progress, steps and history."""
    answer(url, api_key, as_json, lambda server: server.rollout(operation), views.operation_view)


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
    answer(
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
    with admin(url, api_key, as_json, f"cannot roll back {model}") as server:
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
    answer(
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
    answer(
        url, api_key, as_json,
        lambda server: server.alerts(),
        lambda active: views.alerts_table(active) if active else "no active alerts",
        key="alerts",
    )  # fmt: skip
