"""``modelpool status | models | load | preload | unload | reload | audit``: a running server's
pool, through its ``/admin`` routes (``--url``, ``--api-key``, ``--json``, the exit
codes of ``shared``). An ``https://`` server's certificate is checked against the
system's authorities, or the one in ``SSL_CERT_FILE``.

How the answers look is ``pool_views``'s part.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.text import Text

from modelpool.cli import pool_views as views
from modelpool.cli.shared import (
    DEFAULT_URL,
    EXIT_CODES,
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
    remote,
    remote_fail,
)

POLL_SECONDS = 0.2
"""How often a live display asks the server for the model's state."""

TimeoutOption = Annotated[
    float | None,
    typer.Option(min=0.1, help="Give up waiting after this many seconds (default: no limit)."),
]


@app.command(epilog=EXIT_CODES)
def status(
    url: UrlOption = DEFAULT_URL, api_key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Show a running server's memory per device, strategy, queue and loaded models."""
    with remote(url, api_key, as_json) as server:
        answer = server.status()
    if as_json:
        print_json(answer)
        return
    out.print(views.status_view(answer, server.url))


@app.command(epilog=EXIT_CODES)
def models(
    url: UrlOption = DEFAULT_URL, api_key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """List a running server's models: state, device, memory, leases and usage."""
    with remote(url, api_key, as_json) as server:
        answer = server.models()
    if as_json:
        print_json({"models": answer})
        return
    out.print(views.models_table(answer))


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
    with remote(url, api_key, as_json) as server:
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
        print_json(result | {"waited": not no_wait, "already_loaded": already})
    elif no_wait:
        out.print(Text(f"loading {model_id} in the background; 'modelpool models' follows it"))
    elif already:
        out.print(Text(f"{model_id} was already {view['status']}{views.where(view)}"))
    else:
        out.print(Text(f"{model_id} loaded in {seconds:.2f}s: {view['status']}{views.where(view)}"))


@app.command(epilog=EXIT_CODES)
def preload(
    model: ModelArgument,
    priority: Annotated[
        int | None,
        typer.Option(min=0, max=100, help="Preload priority, lower first (default: the model's)."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = None,
) -> None:
    """Load a model ahead of need, only into room nobody needs (it never evicts what
    requests brought in, nor a more important preload); say why if it was skipped."""
    with remote(url, api_key, as_json) as server:
        model_id = server.model(model)["id"]  # an unknown model fails here
        started = time.monotonic()
        result = server.preload(model_id, priority, timeout=timeout)
    seconds = time.monotonic() - started
    view = result["model"]
    if as_json:
        print_json({"ok": True, **result, "seconds": round(seconds, 3)})
    elif result["preloaded"]:
        out.print(
            Text(f"{model_id} preloaded in {seconds:.2f}s: {view['status']}{views.where(view)}")
        )
    else:
        out.print(Text(f"{model_id} not preloaded: {result['reason'] or 'no reason given'}"))


@app.command(epilog=EXIT_CODES)
def unload(
    model: ModelArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = None,
) -> None:
    """Unload a model once its leases are back (no new leases meanwhile), and report."""
    with remote(url, api_key, as_json) as server:
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
        raise remote_fail(message, EXIT_FAILURE, as_json)
    was_loaded = before["status"] not in ("unloaded", "failed")
    if as_json:
        result = {"ok": True, "model": view, "seconds": round(seconds, 3)}
        print_json(result | {"was_loaded": was_loaded})
    elif was_loaded:
        done = "unloaded" if view["status"] == "unloaded" else f"is {view['status']}"
        was = f"was {before['status']}{views.where(before)}"
        out.print(Text(f"{model_id} {done} in {seconds:.2f}s: {was}"))
    else:
        out.print(Text(f"{model_id} was not loaded"))


@app.command(epilog=EXIT_CODES)
def reload(
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = None,
) -> None:
    """Make the server read its config file again and apply what changed, without a
    restart: models added, removed (drained first), reloaded only when a setting that
    needs it changed; budgets and strategy live. A file with problems changes nothing:
    each problem is listed (file:line: key: message) and the exit code is 2.
    """
    from modelpool.client import ApiError

    with remote(url, api_key, as_json) as server:
        try:
            answer = server.reload(timeout=timeout)
        except ApiError as error:
            if error.code != "invalid_config" or not as_json:
                raise  # shown as one error line (each problem on a line of its own)
            # As check-config's --json: every problem, for a script to show or fix.
            print_json({"ok": False, "issues": error.details.get("issues", [])})
            raise typer.Exit(EXIT_INVALID) from None
    problems = answer.get("problems") or []
    if as_json:
        print_json(answer)
    else:
        for line in views.reload_lines(answer):
            out.print(Text(line))
    if problems:
        raise fail("; ".join(problems), EXIT_FAILURE)


@app.command(epilog=EXIT_CODES)
def audit(
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="How many operations, newest first.")
    ] = 20,
) -> None:
    """Show the server's audit log: who loaded, unloaded, pinned, registered, rolled
    out... what, when, and how it ended (callers' keys as fingerprints)."""
    with remote(url, api_key, as_json) as server:
        entries = server.audit(limit)
    if as_json:
        print_json({"entries": entries})
    elif not entries:
        out.print(Text("no operations recorded"))
    else:
        out.print(views.audit_table(entries))


# --- waiting for a load or an unload ------------------------------------------------


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
        raise remote_fail(message, EXIT_FAILURE, as_json) from None


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
                    shown = views.progress_line(poll())
                spinner.update(Text(f"{title}: {shown}, {time.monotonic() - started:.1f}s"))
    except KeyboardInterrupt:
        message = f"interrupted; the server goes on with the {verb} of {model_id}"
        raise fail(message, EXIT_INTERRUPTED) from None
    if failure:
        raise failure[0]
    return answer[0]
