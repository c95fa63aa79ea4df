"""The ``modelpool`` command: thin wrappers that parse, call the library and render.

``check-config``, ``demo``, ``serve``, ``simulate`` and ``bench`` work on this machine;
``status``, ``models``, ``load`` and ``unload`` talk to a running server (``--url``,
``--api-key``), and so do the version and rollout commands (``versions``,
``rollout``...). The exit codes, the same for every command, are in ``shared``.

The modules, each importing only those below it (import-linter checks it)::

    __init__         app (every command registered) and main()
    local remote demo versions rollout simulate strategy
                     the commands, a group each
    rollout_shared   what the version and rollout commands share: --set, refusals
    pool_views rollout_views
                     what the answers look like: tables and lines, no I/O
    shared           the Typer app, exit codes, --url/--api-key/--json, output helpers
"""

from __future__ import annotations

# A command module registers its commands on ``shared.app`` when it is imported; the
# order of these imports is the order of ``modelpool --help``.
# isort: off
from modelpool.cli import local  # noqa: F401  version, check-config, serve
from modelpool.cli import remote  # noqa: F401  status, models, load, unload, reload, audit
from modelpool.cli import demo  # noqa: F401
from modelpool.cli import versions  # noqa: F401  versions, register, unregister
from modelpool.cli import rollout  # noqa: F401  rollout, rollout-status, rollouts...
from modelpool.cli import simulate  # noqa: F401  simulate, bench
from modelpool.cli import top  # noqa: F401  top
from modelpool.cli import logs  # noqa: F401  logs
from modelpool.cli import strategy  # noqa: F401  strategy

# isort: on
from modelpool.cli.shared import DEFAULT_URL, app

__all__ = ["DEFAULT_URL", "app", "main"]


def main() -> None:
    """Entry point of the ``modelpool`` script and ``python -m modelpool``."""
    app()
