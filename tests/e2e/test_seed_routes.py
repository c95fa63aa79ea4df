"""Seed 003's REST paths on a real ``modelpool serve``: aliases of the ``/admin`` routes,
behind the same admin key.

The bodies are the seed's curl examples, with one change: a version's config here is
modelpool's (the command of its model server, a real process from
tests/integration/servers/tiny_server.py), where the seed gives a Hugging Face name
(``"model": "Qwen/Qwen2.5-Omni-7B"``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_process import Server, running_server

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
MODEL = "Qwen2_5OmniForConditionalGeneration_thinker"
API_KEY, ADMIN_KEY = "user-key", "admin-key"


def tiny(name: str) -> list[str]:
    return [sys.executable, TINY, "--port", "${PORT}", "--name", name]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    config = {
        "server": {"api_keys": [API_KEY], "admin_keys": [ADMIN_KEY]},
        "pool": {"budgets": {"cpu": "1GB"}},
        "models": {
            MODEL: {
                "backend": "process",
                "command": tiny("omni-v1"),
                "memory": "50MB",
                "device": "cpu",
                "version": "v1.0",
            }
        },
    }
    with running_server(config, api_key=API_KEY) as running:
        yield running


def call(
    server: Server, method: str, path: str, key: str | None = ADMIN_KEY, **kw: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    headers |= kw.pop("headers", {})
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30, **kw)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/models"),
        ("POST", "/switch"),
        ("GET", "/switch/operations/op-1"),
        ("GET", "/health/models"),
        ("GET", "/alerts"),
    ],
)
def test_the_seed_paths_need_the_admin_key(server: Server, method: str, path: str) -> None:
    assert call(server, method, path, key=None, json={}).status_code == 401
    assert call(server, method, path, key=API_KEY, json={}).status_code == 401
    assert call(server, method, path, key=ADMIN_KEY, json={}).status_code != 401


def test_register_switch_and_follow_as_the_seed_does(server: Server) -> None:
    # The seed's "Register a Model" body (its "model" becomes this server's command).
    registered = call(server, "POST", "/models", json={
        "command": tiny("omni-v2"),  # the seed: "model": "Qwen/Qwen2.5-Omni-7B"
        "model_arch": "Qwen2_5OmniForConditionalGeneration",
        "model_stage": "thinker",
        "version": "v2.0",
        "metadata": {"author": "team"},
    })  # fmt: skip
    assert registered.status_code == 201, registered.text
    assert registered.json()["version"] == "v2.0"
    assert registered.json()["author"] == "team"
    versions = call(server, "GET", f"/admin/models/{MODEL}/versions").json()
    assert [v["version"] for v in versions["versions"]] == ["v1.0", "v2.0"]

    # The seed's "Switch Models" body.
    switched = call(server, "POST", "/switch", json={
        "model_id": "Qwen2_5OmniForConditionalGeneration_thinker",
        "target_version": "v2.0",
        "strategy": "gradual",
        "strategy_config": {
            "duration_minutes": 15,
            "steps": 5
        }
    })  # fmt: skip
    assert switched.status_code == 202, switched.text
    operation_id = switched.json()["operation_id"]
    assert switched.json()["strategy"] == "gradual"

    # "Check Switch Status": the admin route's answer, under the seed's path.
    seed = call(server, "GET", f"/switch/operations/{operation_id}")
    assert seed.status_code == 200
    ours = call(server, "GET", f"/admin/rollouts/{operation_id}").json()
    assert seed.json()["operation_id"] == ours["operation_id"] == operation_id
    assert seed.json()["steps"] == ours["steps"] == [0.2, 0.4, 0.6, 0.8, 1.0]

    # A second switch while this one runs is refused with its reasons, as on /admin.
    again = call(server, "POST", "/switch", json={"model_id": MODEL, "target_version": "v2.0"})
    assert again.status_code == 409
    assert any(operation_id in problem for problem in again.json()["error"]["problems"])

    aborted = call(server, "POST", f"/admin/rollouts/{operation_id}/abort")
    assert aborted.json()["status"] == "aborted"

    # "Monitor Health" and "View Active Alerts".
    health = call(server, "GET", "/health/models")
    assert health.status_code == 200
    assert health.json().keys() == call(server, "GET", "/admin/health").json().keys()
    alerts = call(server, "GET", "/alerts")
    assert alerts.json() == call(server, "GET", "/admin/alerts").json() == {"alerts": []}


def test_the_seed_strategy_names_are_understood(server: Server) -> None:
    answer = call(server, "POST", "/switch", json={
        "model_id": MODEL,
        "target_version": "v1.0",
        "strategy": "ab_test",
        "strategy_config": {"traffic_percentage": 20, "test_duration_hours": 48},
    })  # fmt: skip
    assert answer.status_code == 409  # understood, and refused: v1.0 serves it all
    assert "already serves" in answer.text


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/switch", b"not json", 422, "the body must be a JSON object"),
        ("/models", b"[1, 2]", 422, "the body must be a JSON object"),
        ("/models", b'{"model_id": "x"}', 422, "version: a version name is required"),
        ("/models", b'{"version": "v3"}', 422, "config names no model"),
        ("/models", b'{"model_id": "nope", "version": "v3"}', 404, "nope"),
        ("/switch", b'{"model_id": "nope", "target_version": "v3"}', 409, "unknown model 'nope'"),
        ("/switch", b'{"model_id": "x", "target_version": "v3", "oops": 1}', 422, "oops"),
    ],
)
def test_bad_seed_requests_are_told_what_is_wrong(
    server: Server, path: str, body: bytes, status: int, message: str
) -> None:
    answer = call(server, "POST", path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]["message"]


def test_an_unknown_operation_is_404_on_both_paths(server: Server) -> None:
    seed = call(server, "GET", "/switch/operations/op-nope")
    ours = call(server, "GET", "/admin/rollouts/op-nope")
    assert seed.status_code == ours.status_code == 404
    assert seed.json() == ours.json()
