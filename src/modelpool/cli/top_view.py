"""What ``modelpool top`` shows: devices, models, queue, requests per second, events.

Pure: the server's answers (and the request rates worked out from two of them) in,
one renderable out; ``top`` does the asking and the refreshing.
"""

from __future__ import annotations

from typing import Any, Literal

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelpool.cli import pool_views as views
from modelpool.cli.shared import size

BAR_WIDTH = 24


def rates(before: dict[str, int] | None, now: dict[str, int], seconds: float) -> dict[str, float]:
    """Requests per second per model between two counts taken ``seconds`` apart."""
    if before is None or seconds <= 0:
        return {}
    return {model: max(0, count - before.get(model, 0)) / seconds for model, count in now.items()}


def request_counts(models: list[dict[str, Any]]) -> dict[str, int]:
    return {m["id"]: int(m.get("requests") or 0) for m in models}


def bar(used: int, budget: int, width: int = BAR_WIDTH) -> Text:
    """``[#######.........]`` with the share of ``budget`` that ``used`` takes."""
    share = min(1.0, used / budget) if budget else 0.0
    filled = round(share * width)
    style = "red" if share > 0.9 else "yellow" if share > 0.7 else "green"
    return Text.assemble("[", ("#" * filled, style), ("." * (width - filled), "dim"), "]")


def top_view(
    url: str,
    status: dict[str, Any],
    models: list[dict[str, Any]],
    events: list[dict[str, Any]],
    per_second: dict[str, float],
) -> Group:
    queue = status["queue"]
    total = sum(per_second.values())
    header = Text(
        f"{url}  strategy {status['strategy']}  queue {queue['waiting']}/{queue['max']}  "
        f"{total:.1f} req/s  (q quits)"
    )
    devices = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="devices", title_justify="left")
    for column in ("device", "memory", "used", "budget"):
        devices.add_column(column, no_wrap=True, justify="left" if column != "used" else "right")
    for device, info in status["memory_info"].items():
        used = int(info["committed"]) + int(info.get("reserved", 0))
        budget = int(info["budget"])
        devices.add_row(device, bar(used, budget), size(used), size(budget))
    warm = status.get("warm_memory") or {}
    if warm.get("budget"):
        used = int(warm["committed"]) + int(warm.get("reserved", 0))
        devices.add_row("host (warm)", bar(used, int(warm["budget"])), size(used),
                        size(int(warm["budget"])))  # fmt: skip
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="models", title_justify="left")
    for column in ("model", "state", "device", "memory", "leases", "req/s", "requests"):
        justify: Literal["left", "right"] = (
            "left" if column in ("model", "state", "device") else "right"
        )
        table.add_column(column, justify=justify, no_wrap=True)
    for view in models:
        table.add_row(
            views.name(view["id"], view),
            views.state(view),
            str(view.get("device") or "-"),
            size(int(view.get("memory_bytes") or 0)) if view.get("memory_bytes") else "-",
            str(view.get("leases", 0)),
            f"{per_second.get(view['id'], 0.0):.1f}",
            str(view.get("requests", 0)),
        )
    recent = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="events", title_justify="left")
    for column in ("at", "event", "model", "detail"):
        recent.add_column(column, no_wrap=column != "detail")
    for event in events[-8:]:
        detail = event.get("detail") or {}
        said = detail.get("reason") or detail.get("error") or detail.get("device") or ""
        recent.add_row(
            f"{float(event.get('at', 0.0)):.1f}",
            str(event.get("kind", "?")),
            str(event.get("model_id") or "-"),
            Text(str(said)[:60]),
        )
    return Group(header, devices, table, recent)
