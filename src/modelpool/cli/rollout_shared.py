"""What the version commands (``versions``) and the rollout commands (``rollout``)
share: their exit codes and arguments, ``--set KEY=VALUE``, and the server's answers
read for their routes.

They share the other remote commands' options (``--url``, ``--api-key``, ``--json``)
and exit codes, read for these routes: 4 is an unknown model, version or operation
(any 404 from a route that exists), 2 a request the server refused (409) or found
invalid (422), each problem it listed on its own line under an ``error: ...`` line.

``--set KEY=VALUE`` values are read as YAML, as the config file reads them:
``n_ctx=4096`` is a number, ``period=20s`` a string, ``defaults={temperature: 1.0}``
a mapping (quote it for the shell).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import RenderableType
from rich.text import Text

from modelpool.cli.shared import (
    EXIT_INVALID,
    EXIT_UNKNOWN_MODEL,
    explain,
    fail,
    out,
    print_json,
    remote,
    remote_fail,
    warn,
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

VersionArgument = Annotated[
    str, typer.Argument(help="The version's name (v2, 2024-06.q4...).", show_default=False)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="A setting, its value read as YAML (repeat it: --set a=1 --set b=20s).",
        show_default=False,
    ),
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


def settings_option(pairs: Sequence[str] | None, as_json: bool) -> dict[str, Any]:
    """The ``--set`` pairs as a dict; a bad pair exits 2 and names it."""
    try:
        return parse_settings(pairs or ())
    except ValueError as error:
        raise remote_fail(str(error), EXIT_INVALID, as_json) from None


# --- talking to the server ----------------------------------------------------------


@contextlib.contextmanager
def admin(
    url: str, api_key: str | None, as_json: bool, doing: str | None = None
) -> Iterator[ServerClient]:
    """``shared.remote``, with the server's refusals read for these routes: a 404 is an
    unknown model, version or operation (exit 4); a 409 or 422 lists every problem
    under ``doing`` (exit 2)."""
    with remote(url, api_key, as_json) as server:
        from modelpool.client import ApiError

        try:
            yield server
        except ApiError as error:
            raise _api_failure(error, server.url, as_json, doing) from None


def _api_failure(error: ApiError, url: str, as_json: bool, doing: str | None) -> typer.Exit:
    problems = error.problems
    if error.status in (401, 403) or error.status >= 500:
        message, code = explain(error, url)
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
        print_json({"ok": False, "error": shown | {"problems": problems, "exit_code": code}})
    if not problems or code != EXIT_INVALID:
        return fail(message, code)
    list_problems(doing or message, problems)
    return typer.Exit(code)


def list_problems(doing: str, problems: Sequence[str]) -> None:
    """``error: DOING (N problems):`` on stderr, then each problem on a line of its own."""
    count = len(problems)
    warn(f"error: {doing} ({count} problem{'s' * (count != 1)}):")
    for problem in problems:
        warn(f"  {problem}")


# --- printing the answer ------------------------------------------------------------


def answer(
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
    ``key`` when given), else as ``show`` renders it; a ``str`` is one line (``say``)."""
    with admin(url, api_key, as_json, doing) as server:
        answered = ask(server)
    if as_json:
        print_json({key: answered} if key else answered)
        return
    shown = show(answered)
    if isinstance(shown, str):
        say(shown)
    else:
        out.print(shown)


def say(line: str) -> None:
    """One line on stdout, never wrapped: a script or a pager sees it whole."""
    out.print(Text(line), soft_wrap=True)
