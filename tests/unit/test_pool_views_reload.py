"""``modelpool reload``'s lines: a line per kind of change, sizes as people write them."""

from __future__ import annotations

from modelpool.cli.pool_views import reload_lines


def test_every_kind_of_change_has_its_line() -> None:
    answer = {
        "source": "/etc/modelpool.yaml",
        "added": ["coder"],
        "removed": ["old"],
        "reloaded": {"chat": ["options", "memory"]},
        "updated": {"embed": ["tags"]},
        "settings": {
            "strategy": {"old": "lru", "new": "lfu"},
            "budgets": {
                "old": {"cpu": 8 * 10**9, "cuda:0": 16 * 1024**3},
                "new": {"cpu": 6 * 10**9, "cuda:0": 16 * 1024**3},
            },
        },
        "needs_restart": ["server.port"],
    }
    assert reload_lines(answer) == [
        "reloaded /etc/modelpool.yaml",
        "  added: coder",
        "  removed (drained and unloaded): old",
        "  reloaded: chat (options, memory)",
        "  updated in place: embed (tags)",
        "  pool.strategy: lru -> lfu",
        "  pool.budgets.cpu: 8.0 GB -> 6.0 GB",
        "  needs a restart (left as it runs): server.port",
    ]


def test_nothing_changed_is_one_line() -> None:
    assert reload_lines({"source": "m.yaml"}) == ["reloaded m.yaml: nothing changed"]
