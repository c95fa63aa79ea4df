"""``modelpool top``: a live terminal view of a running server's pool, refreshed every
second, for servers without a browser (the dashboard's job, in a terminal); ``q``
quits, and so does Ctrl-C. ``--iterations N`` draws N times and stops, for scripts."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.live import Live

from modelpool.cli.shared import DEFAULT_URL, EXIT_CODES, KeyOption, UrlOption, app, out, remote
from modelpool.cli.top_view import rates, request_counts, top_view


@contextlib.contextmanager
def keys() -> Iterator[int | None]:
    """Standard input's descriptor in cbreak mode (a key read as it is pressed), restored
    after; None when it is not a terminal (a script: only Ctrl-C or --iterations stop)."""
    if not sys.stdin.isatty():
        yield None
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def quit_pressed(fd: int | None, seconds: float) -> bool:
    """Wait ``seconds`` for a key; True if it was ``q``."""
    if fd is None:
        time.sleep(seconds)
        return False
    ready, _, _ = select.select([fd], [], [], seconds)
    return bool(ready) and os.read(fd, 32).strip().lower().startswith(b"q")


@app.command(epilog=EXIT_CODES)
def top(
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 1.0,
    iterations: Annotated[
        int | None, typer.Option(min=1, help="Draw this many times, then stop.")
    ] = None,
) -> None:
    """Live view of a running server: devices, models, queue, requests per second and
    recent events, refreshed every second; q quits."""
    with remote(url, api_key, False) as server, keys() as fd:
        counts: dict[str, int] | None = None
        taken = time.monotonic()
        drawn = 0
        with Live(console=out, auto_refresh=False, transient=False) as live:
            while True:
                status, models = server.status(), server.models()
                events = server.recent_events(8)
                now_counts, now = request_counts(models), time.monotonic()
                per_second = rates(counts, now_counts, now - taken)
                counts, taken = now_counts, now
                live.update(top_view(server.url, status, models, events, per_second))
                live.refresh()
                drawn += 1
                if iterations is not None and drawn >= iterations:
                    return
                if quit_pressed(fd, interval):
                    return
