"""``strategy: auto`` in a running server: its evaluations show in ``GET /admin/strategy``,
in ``modelpool strategy`` and in the metrics.

Which strategy wins is the integration test's part (tests/integration/test_strategy_auto_pool.py,
on a manual clock); here the evaluations run on the server's own timer over real traffic.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from server_process import modelpool_cli, running_server

FAKE = {"backend": "fake", "memory": "4GB", "device": "cpu"}
CONFIG: dict[str, Any] = {
    "pool": {
        "strategy": "auto",
        "auto_options": {"interval": "0.5s", "candidates": ["lru", "cost_aware", "fifo"]},
        "budgets": {"cpu": "8GB"},
    },
    "models": {
        "big": {**FAKE, "load_seconds": 0.3},
        "s1": FAKE,
        "s2": FAKE,
    },
}


def wait_for_strategy(url: str, condition: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        answer: dict[str, Any] = httpx.get(f"{url}/admin/strategy", timeout=10).json()
        if condition(answer):
            return answer
        assert time.monotonic() < deadline, f"not met in time: {answer}"
        pause.wait(0.1)


def test_evaluations_of_real_traffic_show_their_table_in_admin_cli_and_metrics() -> None:
    with running_server(CONFIG) as server:
        before = httpx.get(f"{server.url}/admin/strategy", timeout=10).json()
        assert before["auto"] is True
        assert before["strategy"] == "hybrid"  # auto starts from hybrid
        for _ in range(4):
            for model in ("big", "s1", "s2", "s1", "s2"):
                answer = httpx.post(
                    f"{server.v1}/embeddings", json={"model": model, "input": "x"}, timeout=30
                )
                # A fake model makes no embeddings: it says so (400) once its lease is
                # granted, so each request is traffic all the same, loads included.
                assert answer.status_code == 400
                assert "does not make embeddings" in answer.text
        answer = wait_for_strategy(
            server.url, lambda a: a["last"] is not None and a["last"]["requests"] == 20
        )
        last = answer["last"]
        rows = {row["strategy"] for row in last["table"]}
        assert rows == {"hybrid", "lru", "cost_aware", "fifo"}  # candidates and the current
        assert all(row["cold_loads"] >= 3 for row in last["table"])
        assert answer["strategy"] == last["chosen"]
        assert answer["evaluations"] >= 1

        shown = modelpool_cli("strategy", "--url", server.url)
        assert shown.returncode == 0, shown.stderr
        assert "(auto)" in shown.stdout
        assert "cost_aware" in shown.stdout
        assert "total wait" in shown.stdout
        as_json = json.loads(modelpool_cli("strategy", "--url", server.url, "--json").stdout)
        assert as_json["auto"] is True

        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics)
            for s in family.samples
        }
        assert samples[("modelpool_strategy", (("strategy", answer["strategy"]),))] == 1
        evaluated = sum(
            v for (name, _), v in samples.items() if name == "modelpool_strategy_evaluations_total"
        )
        assert evaluated >= 1
        events = httpx.get(f"{server.url}/admin/events", params={"limit": 1000}, timeout=10)
        kinds = [e["kind"] for e in events.json()["events"]]
        assert "strategy_evaluated" in kinds
