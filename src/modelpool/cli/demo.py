"""``modelpool demo``: the pool swapping fake models on this machine (``modelpool.demo``),
with a live table on a terminal and a summary at the end (``pool_views``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.live import Live

from modelpool.cli import pool_views as views
from modelpool.cli.shared import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    StatusJsonOption,
    app,
    fail,
    out,
    print_json,
)
from modelpool.demo import run_demo
from modelpool.errors import ConfigError, ModelPoolError, PluginNotFound
from modelpool.plugins import POLICIES


@app.command()
def demo(
    seconds: Annotated[
        float, typer.Option(min=0.1, help="How long the workload sends requests.")
    ] = 8.0,
    strategy: Annotated[str, typer.Option(help="Eviction strategy (see README).")] = "hybrid",
    seed: Annotated[int, typer.Option(help="Seed of the random workload.")] = 0,
    clients: Annotated[int, typer.Option(min=1, max=64, help="Concurrent clients.")] = 4,
    as_json: StatusJsonOption = False,
) -> None:
    """Watch the pool swap fake models under a 16 GiB budget (no GPU, no weights)."""
    if strategy not in POLICIES.names():
        raise fail(str(PluginNotFound(POLICIES.kind, strategy, POLICIES.names())), EXIT_INVALID)
    try:
        if as_json:
            status = asyncio.run(run_demo(seconds, strategy=strategy, seed=seed, clients=clients))
            print_json(status)
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
                    on_update=lambda progress: live.update(views.live_view(progress)),
                )
            )
    except (ConfigError, PluginNotFound) as error:
        raise fail(str(error), EXIT_INVALID) from None
    except ModelPoolError as error:
        raise fail(str(error), EXIT_FAILURE) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None
    out.print(views.summary(status))
