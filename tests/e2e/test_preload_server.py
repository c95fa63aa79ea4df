"""Preloads through ``modelpool serve``: the config's at start, ``POST
/admin/models/{id}/preload`` and ``modelpool preload`` as a user runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server_process import Server, modelpool_cli, running_server

from modelpool.client import ServerClient

FOUR: dict[str, Any] = {"backend": "fake", "memory": "4GB", "device": "cpu"}
CONFIG: dict[str, Any] = {
    "pool": {"strategy": "lru", "budgets": {"cpu": "8GB"}},
    "models": {  # two of the three fit
        "first": {**FOUR, "preload": 1},
        "second": {**FOUR, "preload": 2},
        "later": FOUR,
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(CONFIG) as server:
        yield server


def test_config_preloads_load_at_start_and_a_late_one_is_refused_saying_why(
    server: Server,
) -> None:
    with ServerClient(server.url) as client:
        # Answered once resident: the start's preloads have run by then.
        assert client.preload("first")["preloaded"] is True
        assert client.preload("second")["preloaded"] is True
        answer = client.preload("later")
    assert answer["preloaded"] is False
    assert "a preload of priority" in answer["reason"]
    assert answer["model"]["status"] == "unloaded"


def test_the_cli_preloads_with_a_priority_and_says_when_it_did_not(server: Server) -> None:
    refused = modelpool_cli("preload", "later", "--url", server.url)
    assert refused.returncode == 0, refused.stderr
    assert refused.stdout.startswith("later not preloaded: it would evict ")

    done = modelpool_cli("preload", "later", "--priority", "0", "--json", "--url", server.url)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["preloaded"] is True
    assert answer["model"]["status"] == "ready"
    with ServerClient(server.url) as client:
        models = {m["id"]: m["status"] for m in client.models()}
    assert sorted(models.values()) == ["ready", "ready", "unloaded"]


def test_preload_refuses_bad_input_clearly(server: Server) -> None:
    unknown = modelpool_cli("preload", "nope", "--url", server.url)
    assert unknown.returncode == 4
    bad = httpx.post(f"{server.url}/admin/models/later/preload", params={"priority": 500})
    assert bad.status_code in (400, 422)
    assert "priority" in bad.text
