"""`modelpool models` and `modelpool status` show where each model is placed."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from modelpool.cli.pool_views import models_table, placed

GB = 10**9


def view(model_id: str, device: str | None, devices: dict[str, int]) -> dict[str, Any]:
    return {
        "id": model_id, "status": "ready" if device else "unloaded", "device": device,
        "devices": devices, "memory_bytes": sum(devices.values()), "leases": 0,
        "load_count": 1, "requests": 0, "hit_rate": 0.0, "last_error": None, "pinned": False,
    }  # fmt: skip


def test_a_spread_model_names_every_device() -> None:
    wide = view("wide", "cuda:0", {"cuda:0": 6 * GB, "cuda:1": 6 * GB})
    one = view("one", "cuda:2", {"cuda:2": 2 * GB})
    gone = view("gone", None, {})
    assert (placed(wide), placed(one), placed(gone)) == ("cuda:0+cuda:1", "cuda:2", "-")
    console = Console(record=True, width=120)
    console.print(models_table([wide, one, gone]))
    rows = {line.split()[0]: line for line in console.export_text().splitlines() if line.strip()}
    assert "cuda:0+cuda:1" in rows["wide"]
    assert "cuda:2" in rows["one"]


def test_a_model_with_copies_names_where_each_copy_is() -> None:
    copies = [
        {**view("chat#1", "cuda:0", {"cuda:0": GB}), "id": "chat#1"},
        {**view("chat#2", "cuda:1", {"cuda:1": GB}), "id": "chat#2"},
    ]
    model = {**view("chat", "cuda:0", {"cuda:0": GB, "cuda:1": GB}), "replicas": copies}
    assert placed(model) == "cuda:0, cuda:1"
