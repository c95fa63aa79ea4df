"""How the pool commands show a pool: a server's status and models (``status``,
``models``, ``load``, ``unload``), its audit log (``audit``) and the demo's live table
and summary.

Each function takes the pool's JSON (dicts, as ``ServerClient`` or the demo returns
them) and returns what to print; none of them prints or talks to the server.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelpool.cli.shared import STATE_STYLE, shorten, size
from modelpool.units import format_size

if TYPE_CHECKING:
    from modelpool.demo import DemoProgress


# --- pieces -------------------------------------------------------------------------


def state(view: dict[str, Any]) -> Text:
    """A model's state, in its colour."""
    shown = str(view["status"])
    return Text(shown, style=STATE_STYLE.get(shown, "dim"))


def name(model: str, info: dict[str, Any]) -> str:
    """The model's id, ``*`` after it when pinned."""
    return model + (" *" if info["pinned"] else "")


def progress_line(view: dict[str, Any]) -> str:
    """A model's state as a live line shows it: ``loading``, ``unloading, 2 leases out``.

    Not ``waiting``: the admin load being watched is itself one of the waiters.
    """
    leases = int(view.get("leases") or 0)
    out_now = f", {leases} lease{'s' * (leases != 1)} out" if leases else ""
    return f"{view['status']}{out_now}"


def placed(view: dict[str, Any]) -> str:
    """``cuda:0``, or ``cuda:0+cuda:1`` for a model spread over devices; ``-``: nowhere."""
    copies = view.get("replicas") or []
    if copies:  # a model served by several copies: where each is
        return ", ".join(str(c["device"]) for c in copies if c.get("device")) or "-"
    devices = view.get("devices") or {}
    if len(devices) > 1:
        return "+".join(devices)
    return str(view.get("device") or "-")


def where(view: dict[str, Any]) -> str:
    """`` on cuda:0 (4.0 GB)``: where a model is, and what it holds."""
    device = f" on {placed(view)}" if view.get("device") else ""
    return f"{device} ({size(int(view['memory_bytes']))})" if view.get("memory_bytes") else device


# --- a server's pool ----------------------------------------------------------------


def status_view(status: dict[str, Any], url: str) -> Group:
    """``GET /admin/status``: a header, memory per device, the loaded models."""
    queue = status["queue"]
    header = Text(
        f"{url}: strategy {status['strategy']}, "
        f"queue {queue['waiting']} waiting (max {queue['max']})"
    )
    memory = Table(title="memory", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("device", "budget", "used", "reserved", "free"):
        memory.add_column(column, justify="left" if column == "device" else "right", no_wrap=True)
    rows = list(status["memory_info"].items())
    if status.get("warm_memory", {}).get("budget"):
        rows.append(("host (warm)", status["warm_memory"]))
    for device, info in rows:
        used = int(info["committed"]) + int(info.get("leaving", 0))
        memory.add_row(
            device,
            size(int(info["budget"])),
            size(used),
            size(int(info["reserved"])),
            size(int(info["free"])),
        )
    resident = {
        model: info
        for model, info in status["model_resources"].items()
        if info["status"] not in ("unloaded", "failed")
    }
    if not resident:
        return Group(header, memory, Text("no model loaded"))
    models = Table(title="loaded models", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("model", "state", "device", "memory", "leases", "idle"):
        justify: Literal["left", "right"] = (
            "right" if column in ("memory", "leases", "idle") else "left"
        )
        models.add_column(column, justify=justify, no_wrap=True)
    for model, info in resident.items():
        idle = info.get("idle_seconds")
        models.add_row(
            name(model, info),
            state(info),
            placed(info),
            size(int(info["memory_bytes"])),
            str(info["leases"]),
            "-" if idle is None else f"{float(idle):.0f}s",
        )
    return Group(header, memory, models)


def models_table(views: list[dict[str, Any]]) -> Table:
    """``GET /admin/models``: a row per model: state, device, memory, leases, usage;
    under a model with replicas, a row per copy that is or was loaded."""
    table = Table(caption="* pinned", caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = (
        "model",
        "state",
        "device",
        "memory",
        "leases",
        "loads",
        "reqs",
        "hit%",
        "last error",
    )
    for column in columns:
        justify: Literal["left", "right"] = (
            "left" if column in ("model", "state", "device", "last error") else "right"
        )
        # Only the last error gives way to a narrow terminal (cut short, on one line).
        table.add_column(column, justify=justify, no_wrap=column != "last error")
    for view in views:
        _model_row(table, name(view["id"], view), view)
        # A model with replicas: a row per copy under it (its own state, memory, use).
        for copy in view.get("replicas", ()):
            if copy["status"] != "unloaded" or copy["load_count"]:
                _model_row(table, Text(f"  {copy['id']}", "dim"), copy)
    return table


def _model_row(table: Table, label: Text | str, view: dict[str, Any]) -> None:
    table.add_row(
        label,
        state(view),
        placed(view),
        size(int(view["memory_bytes"])) if view["memory_bytes"] else "-",
        str(view["leases"]),
        str(view["load_count"]),
        str(view["requests"]),
        f"{view['hit_rate']:.0%}" if view["requests"] else "-",
        Text(shorten(view["last_error"]), "red", no_wrap=True, overflow="ellipsis"),
    )


def audit_table(entries: list[dict[str, Any]]) -> Table:
    """``GET /admin/audit``: a row per operation, newest first: when, who (address and
    key fingerprint), what, and how it ended."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("time", "caller", "key", "operation", "request", "outcome"):
        table.add_column(column, no_wrap=column not in ("request", "outcome"))
    for entry in entries:
        caller = entry.get("caller") or {}
        request = entry.get("request") or {}
        asked = " ".join(f"{name}={_shown(value)}" for name, value in request.items())
        status = entry.get("status")
        if entry.get("outcome") == "ok":
            outcome = Text(f"ok {status}", "green")
        else:
            outcome = Text(f"{status} {shorten(entry.get('error'))}", "red")
        table.add_row(
            str(entry.get("time", "?")),
            str(caller.get("address", "?")),
            str(caller.get("key", "?")),
            str(entry.get("operation", "?")),
            Text(shorten(asked, 60)),
            outcome,
        )
    return table


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def reload_lines(answer: dict[str, Any]) -> list[str]:
    """``POST /admin/reload``'s diff, a line per kind of change (none: one line)."""
    lines = [f"reloaded {answer.get('source', 'the config')}"]
    if answer.get("added"):
        lines.append(f"  added: {', '.join(answer['added'])}")
    if answer.get("removed"):
        lines.append(f"  removed (drained and unloaded): {', '.join(answer['removed'])}")
    for kind, title in (("reloaded", "reloaded"), ("updated", "updated in place")):
        changes = answer.get(kind) or {}
        if changes:
            shown = ", ".join(f"{model} ({', '.join(fields)})" for model, fields in changes.items())
            lines.append(f"  {title}: {shown}")
    for name, change in (answer.get("settings") or {}).items():
        old, new = change["old"], change["new"]
        if name == "budgets":  # sizes as a person writes them, each device that moved
            moved = [d for d in new if old.get(d) != new[d]]
            for device in moved:
                lines.append(f"  pool.budgets.{device}: {size(old[device])} -> {size(new[device])}")
            continue
        lines.append(f"  pool.{name}: {_shown(old)} -> {_shown(new)}")
    if answer.get("needs_restart"):
        lines.append(f"  needs a restart (left as it runs): {', '.join(answer['needs_restart'])}")
    if len(lines) == 1:
        lines[0] += ": nothing changed"
    return lines


# --- the demo -----------------------------------------------------------------------


def _caption(models: dict[str, Any]) -> str:
    notes = ["* pinned"]
    notes += [f"{m}: ttl {info['ttl']:g}s" for m, info in models.items() if info["ttl"]]
    groups: dict[str, list[str]] = {}
    for model, info in models.items():
        if info["group"]:
            groups.setdefault(info["group"], []).append(model)
    notes += [f"group {g}: {', '.join(members)}" for g, members in groups.items()]
    return "; ".join(notes)


def live_view(progress: DemoProgress) -> Group:
    """The demo while it runs: the pool's models and memory, the recent events."""
    status = progress.status
    models = status["model_resources"]
    memory = "  ".join(
        f"{device} {format_size(m['committed'] + m['reserved'])} of {format_size(m['budget'])}"
        for device, m in status["memory_info"].items()
    )
    header = Text(
        f"strategy {status['strategy']}, "
        f"{progress.elapsed:.1f}s of {progress.seconds:g}s, {progress.requests} requests "
        f"({progress.completed} done, {progress.failed} failed), {memory}"
    )
    table = Table(
        caption=_caption(models), caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for column in ("model", "state", "memory", "leases", "loads", "hits", "misses"):
        justify: Literal["left", "right"] = "left" if column in ("model", "state") else "right"
        table.add_column(column, justify=justify, no_wrap=True)
    for model, info in models.items():
        table.add_row(
            name(model, info),
            state(info),
            format_size(info["memory_bytes"]),
            str(info["leases"]),
            str(info["load_count"]),
            str(info["hits"]),
            str(info["misses"]),
        )
    events = Table(title="recent events", title_justify="left", show_header=False, box=None)
    for event in progress.events:
        detail = event.detail
        note = detail.get("reason") or detail.get("error") or detail.get("held_by") or ""
        if "seconds" in detail and not note:
            note = f"in {float(detail['seconds']):.2f}s"
        events.add_row(
            f"{event.at - progress.started:5.1f}s", str(event.kind), event.model_id or "", str(note)
        )
    return Group(header, table, events)


def summary(status: dict[str, Any]) -> Group:
    """The demo once it has run: requests, hit rate, unloads by reason, a row per model."""
    run = status["demo"]
    evictions = ", ".join(f"{reason} {n}" for reason, n in sorted(run["evictions"].items()))
    lines = [
        f"{run['requests']} requests ({run['completed']} completed, {run['failed']} failed)"
        f" from {run['clients']} clients in {run['elapsed']:.1f}s;"
        f" strategy {run['strategy']}, seed {run['seed']}",
        f"hit rate {run['hit_rate']:.0%} ({run['hits']} hits, {run['misses']} misses);"
        f" {run['loads']} loads; unloads by reason: {evictions or 'none'}",
    ]
    if run["errors"]:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in run["errors"].items()))
    models = status["model_resources"]
    table = Table(
        title="per model",
        title_justify="left",
        caption=_caption(models),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns = ("model", "memory", "reqs", "hit%", "loads", "load s", "unloads", "p50/p95 ms")
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
    for model, info in models.items():
        table.add_row(
            name(model, info),
            format_size(info["memory_bytes"]),
            str(info["requests"]),
            f"{info['hit_rate']:.0%}" if info["requests"] else "-",
            str(info["load_count"]),
            f"{info['load_seconds_total']:.1f}",
            str(info["unload_count"]),
            f"{info['p50_response_time'] * 1000:.0f}/{info['p95_response_time'] * 1000:.0f}",
        )
    return Group(Text("summary", style="bold"), *(Text(line) for line in lines), table)


def strategy_view(answer: dict[str, Any]) -> Group:
    """``GET /admin/strategy``: the strategy, why, and the last evaluation's table (per
    candidate: total and p95 wait, cold loads), the chosen row in bold."""
    mode = "auto" if answer.get("auto") else "fixed"
    lines: list[Any] = [
        Text.assemble(("strategy ", "dim"), (str(answer["strategy"]), "bold"), f" ({mode})"),
        Text(str(answer.get("why", ""))),
    ]
    last = answer.get("last")
    if last:
        lines.append(
            Text(
                f"last evaluation: {last['requests']} requests replayed, "
                f"{answer.get('evaluations', 0)} evaluations, {answer.get('switches', 0)} "
                f"switches, {answer.get('skipped', 0)} skipped",
                "dim",
            )
        )
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for column in ("strategy", "total wait", "p95 wait", "cold loads", "restores"):
            table.add_column(column, justify="left" if column == "strategy" else "right")
        for row in last["table"]:
            style = "bold" if row["strategy"] == last["chosen"] else ""
            table.add_row(
                row["strategy"],
                f"{row['total_wait']:.1f} s",
                f"{row['p95_wait']:.2f} s",
                str(row["cold_loads"]),
                str(row.get("warm_restores", 0)),
                style=style,
            )
        lines.append(table)
    return Group(*lines)
