"""``modelpool logs ID [-n N] [-f]``: what a model's server printed, from a running server
(``GET /admin/models/{id}/logs``); ``-f`` follows it as it prints, until the model is
unloaded or Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer

from modelpool.cli.shared import (
    DEFAULT_URL,
    EXIT_CODES,
    JsonOption,
    KeyOption,
    ModelArgument,
    UrlOption,
    app,
    print_json,
    remote,
)


@app.command(epilog=EXIT_CODES)
def logs(
    model: ModelArgument,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Lines to show first.")] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Go on printing new lines as they come.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print what a model's server printed (process models); -f follows it."""
    with remote(url, api_key, as_json) as server:
        model_id = server.model(model)["id"]  # an unknown model fails here (exit 4)
        if not follow:
            printed = server.logs(model_id, lines)
            if as_json:
                print_json({"model": model_id, "lines": printed})
            else:
                for line in printed:
                    typer.echo(line)
            return
        for line in server.follow_logs(model_id, lines):
            typer.echo(line)
