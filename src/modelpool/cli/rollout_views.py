"""How the version and rollout commands (``versions``, ``rollout``) show what the
server answered: versions, rollout operations, their history, and health alerts, as
rich tables and one-line summaries.

Each function takes the server's JSON (dicts, as ``ServerClient`` returns them) and
returns what to print; none of them prints or talks to the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelpool.cli.shared import STATE_STYLE, shorten

_OP_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "rolled_back": "red",
    "aborted": "magenta",
    "failed": "red",
}
_LEVEL_STYLE = {"ok": "green", "warning": "yellow", "critical": "red"}


# --- pieces -------------------------------------------------------------------------


def percent(share: Any) -> str:
    """``0.1`` as ``10%``, ``0.125`` as ``12.5%``."""
    value = float(share or 0) * 100
    return f"{value:.0f}%" if abs(value - round(value)) < 0.05 else f"{value:.1f}%"


def when(value: Any, shape: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A time the server sent (ISO 8601, or epoch seconds) in local time; a date or any
    other text as it came."""
    if value is None or value == "":
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 1e9:  # a monotonic clock's seconds: only the server can place them
            return f"{value:.1f}"
        return datetime.fromtimestamp(value).astimezone().strftime(shape)
    text = str(value)
    if "T" not in text and " " not in text:
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return (moment.astimezone() if moment.tzinfo else moment).strftime(shape)


def _status(status: Any) -> Text:
    shown = str(status)
    return Text(shown, style=_OP_STYLE.get(shown, "dim"))


def _table(*columns: str, right: tuple[str, ...] = (), wrap: str | None = None) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        justify: Literal["left", "right"] = "right" if column in right else "left"
        table.add_column(column, justify=justify, no_wrap=column != wrap)
    return table


def _cut(text: Any) -> Text:
    """Free text in a table: one line, cut short on a narrow terminal."""
    return Text(shorten(str(text)) if text else "", no_wrap=True, overflow="ellipsis")


def _measure(metric: str, value: Any) -> str:
    """An error rate as a percentage, a latency (seconds) in ms."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-" if value is None else str(value)
    if metric == "error_rate":
        return percent(value)
    if metric.startswith("p") and metric[1:].isdigit():
        return f"{value * 1000:.0f} ms"
    return f"{value:.3g}"


# --- one line -----------------------------------------------------------------------


def summary_line(op: dict[str, Any]) -> str:
    """``op-1a2b: canary of chat from v1 to v2, running, v2 at 10%, 25% done``."""
    return (
        f"{op['operation_id']}: {op['strategy']} of {op['model']} from {op['source']} to "
        f"{op['target']}, {op['status']}, {op['target']} at {percent(op.get('share'))}, "
        f"{percent(op.get('progress'))} done"
    )


def back_line(done: str, op: dict[str, Any]) -> str:
    """``aborted op-1a2b: chat is back on v1``: an operation that gave its traffic back."""
    return f"{done} {op['operation_id']}: {op['model']} is back on {op['source']}"


def history_line(entry: dict[str, Any]) -> Text:
    """One entry of an operation's history, as a followed rollout prints it."""
    return Text(
        f"{when(entry.get('at'), '%H:%M:%S')}  {entry.get('status', ''):<11} "
        f"{percent(entry.get('share')):>6}  {entry.get('message', '')}"
    )


# --- whole views --------------------------------------------------------------------


def versions_view(answer: dict[str, Any]) -> Group:
    """A model's versions (``GET .../versions``): the split, a table, its rollout."""
    serving = answer.get("serving")
    weights = {v: float(w) for v, w in (answer.get("weights") or {}).items() if w}
    split = ", ".join(f"{v} {percent(w)}" for v, w in weights.items())
    header = f"{answer['model']}: serving {serving}" + (
        f" (split {split})" if len(weights) > 1 else ""
    )
    table = _table(
        "version", "state", "weight", "origin", "author", "created", "notes",
        right=("weight",), wrap="notes",
    )  # fmt: skip
    table.caption, table.caption_justify = "* serving", "left"
    for view in answer["versions"]:
        state = str(view.get("state"))
        table.add_row(
            f"{view['version']}{' *' if view['version'] == serving else ''}",
            Text(state, style=STATE_STYLE.get(state, "dim")),
            percent(view.get("weight")),
            str(view.get("origin") or "-"),
            str(view.get("author") or "-"),
            when(view.get("created")),
            _cut(view.get("notes")),
        )
    parts: list[Text | Table] = [Text(header), table]
    if answer.get("rollout"):
        parts.append(Text(f"rollout {summary_line(answer['rollout'])}"))
    return Group(*parts)


def operation_view(op: dict[str, Any]) -> Group:
    """One operation: what it moves, its status, steps, settings, reason and history."""
    steps = [float(s) for s in op.get("steps") or []]
    step = int(op.get("step", -1))
    lines = [
        Text(
            f"{op['operation_id']}: {op['strategy']} rollout of {op['model']} from "
            f"{op['source']} to {op['target']}, asked {when(op.get('created'))}"
        ),
        Text.assemble(
            "status ",
            _status(op["status"]),
            f", {op['target']} at {percent(op.get('share'))} of traffic, "
            f"{percent(op.get('progress'))} done",
            f" (step {step + 1} of {len(steps)})" if steps and step >= 0 else "",
        ),
    ]
    if steps:
        shown = Text("steps ")
        for index, share in enumerate(steps):
            shown.append(" → " if index else "")
            shown.append(percent(share), style="bold" if index == step else "")
        period = float(op.get("period") or 0)
        lines.append(shown + Text(f", each held {period:g}s" if period else ""))
    if op.get("settings"):
        shown_settings = ", ".join(f"{k}={v}" for k, v in op["settings"].items())
        lines.append(Text(f"settings {shown_settings}"))
    if op.get("reason"):
        lines.append(Text(f"reason: {op['reason']}"))
    history = _table("at", "status", "share", "message", right=("share",), wrap="message")
    history.title, history.title_justify = "history", "left"
    for entry in op.get("history") or []:
        history.add_row(
            when(entry.get("at")),
            _status(entry.get("status")),
            percent(entry.get("share")),
            str(entry.get("message") or ""),
        )
    return Group(*lines, history)


def rollouts_table(operations: list[dict[str, Any]]) -> Table:
    """Operation summaries, a row each: model, versions, strategy, status, share, progress."""
    table = _table(
        "operation", "model", "from", "to", "strategy", "status", "share", "done", "reason",
        right=("share", "done"), wrap="reason",
    )  # fmt: skip
    for op in operations:
        table.add_row(
            str(op["operation_id"]),
            str(op["model"]),
            str(op["source"]),
            str(op["target"]),
            str(op["strategy"]),
            _status(op["status"]),
            percent(op.get("share")),
            percent(op.get("progress")),
            _cut(op.get("reason")),
        )
    return table


def alerts_table(active: list[dict[str, Any]]) -> Table:
    """Health alerts, a row each: which model version, how bad, the metric against its
    threshold, and when."""
    table = _table(
        "model", "version", "level", "metric", "value", "threshold", "at",
        right=("value", "threshold"),
    )  # fmt: skip
    for alert in active:
        level = str(alert.get("level"))
        metric = str(alert.get("metric"))
        table.add_row(
            str(alert.get("model_id")),
            str(alert.get("version") or "-"),
            Text(level + (" (resolved)" if alert.get("resolved") else ""),
                 style=_LEVEL_STYLE.get(level, "dim")),
            metric,
            _measure(metric, alert.get("value")),
            _measure(metric, alert.get("threshold")),
            when(alert.get("at")),
        )  # fmt: skip
    return table
