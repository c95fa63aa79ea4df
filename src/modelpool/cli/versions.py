"""``modelpool versions | register | unregister``: a running server's model versions.

Their options, exit codes and ``--set`` are ``rollout_shared``'s; how the answers
look is ``rollout_views``'s part.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelpool.cli import rollout_views as views
from modelpool.cli.rollout_shared import (
    EXIT_CODES,
    PANEL,
    SetOption,
    VersionArgument,
    answer,
    settings_option,
)
from modelpool.cli.shared import DEFAULT_URL, JsonOption, KeyOption, ModelArgument, UrlOption, app


@app.command(epilog=EXIT_CODES, rich_help_panel=PANEL)
def versions(
    model: ModelArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a model's versions: state, share of traffic, origin, author; its rollout."""
    answer(url, api_key, as_json, lambda server: server.versions(model), views.versions_view)


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
    values = settings_option(settings, as_json)
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

    answer(
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
    answer(
        url, api_key, as_json,
        lambda server: server.unregister_version(model, version),
        lambda removed: f"removed {removed.get('model', model)}@{removed.get('version', version)}",
        doing=f"cannot remove {model}@{version}",
    )  # fmt: skip
