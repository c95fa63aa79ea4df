"""``modelpool strategy``: a running server's eviction strategy, why it runs, and (with
``strategy: auto``) the table of the last replay of its traffic (``GET /admin/strategy``)."""

from __future__ import annotations

from modelpool.cli import pool_views as views
from modelpool.cli.shared import (
    DEFAULT_URL,
    JsonOption,
    KeyOption,
    UrlOption,
    app,
    out,
    print_json,
    remote,
)

EXIT_CODES = (
    "Exit codes: 0 ok; 1 server error (5xx); 3 cannot reach the server; "
    "5 authentication failed (401)."
)


@app.command(epilog=EXIT_CODES)
def strategy(
    url: UrlOption = DEFAULT_URL, api_key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Show the server's strategy and why; with strategy: auto, what each candidate
    would have cost the recent traffic at the last evaluation."""
    with remote(url, api_key, as_json) as server:
        answer = server.strategy()
    if as_json:
        print_json(answer)
        return
    out.print(views.strategy_view(answer))
