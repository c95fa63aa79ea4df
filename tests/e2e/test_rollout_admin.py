"""Versions and rollouts through a real server's admin API, with real model servers.

Each version is a real process (``tiny_server.py`` from the integration tests) that
says its name in every answer, so a test sees which version served a request; one of
them fails 30 % of its answers with a 500, as a bad release would.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from server_process import Server, running_server

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
TIMEOUT = 30.0


def tiny(name: str, *flags: str) -> dict[str, Any]:
    return {"command": [sys.executable, TINY, "--port", "${PORT}", "--name", name, *flags]}


def config() -> dict[str, Any]:
    return {
        "pool": {"budgets": {"cpu": "1GB"}},
        "health": {"interval": "0.1s", "window": "60s", "thresholds": {"min_requests": 10}},
        "models": {
            "tiny": {
                "backend": "process",
                **tiny("tiny-v1"),
                "memory": "50MB",
                "device": "cpu",
                "versions": {
                    "v2": {**tiny("tiny-v2"), "author": "bo"},
                    "bad": {**tiny("tiny-bad", "--fail-requests", "0.3"), "notes": "30% 500s"},
                },
            }
        },
    }


@pytest.fixture
def server() -> Iterator[Server]:
    with running_server(config()) as running:
        yield running


def admin(server: Server, path: str, method: str = "GET", status: int = 200, **kw: Any) -> Any:
    response = httpx.request(method, f"{server.url}/admin/{path}", timeout=30, **kw)
    assert response.status_code == status, response.text
    return response.json()


def ask(server: Server, model: str = "tiny", **headers: str) -> str:
    """One chat request; the name of the version that answered."""
    client = openai.OpenAI(
        base_url=server.v1, api_key="unused", max_retries=0, default_headers=headers
    )
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    content = reply.choices[0].message.content
    assert content is not None
    return content.split(":", 1)[0]


def until_ended(server: Server, operation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while (op := admin(server, f"rollouts/{operation_id}"))["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, op
        time.sleep(0.05)  # polling the API as an operator would
    return op


def until_started(server: Server, operation_id: str) -> dict[str, Any]:
    """Until the operation is past ``pending`` (its versions are loaded)."""
    deadline = time.monotonic() + TIMEOUT
    while (op := admin(server, f"rollouts/{operation_id}"))["status"] == "pending":
        assert time.monotonic() < deadline, op
        time.sleep(0.05)  # polling the API as an operator would
    return op


def start(server: Server, target: str, strategy: str, **settings: Any) -> dict[str, Any]:
    body = {"model": "tiny", "target_version": target, "strategy": strategy, "config": settings}
    return admin(server, "rollouts", "POST", status=202, json=body)


def test_a_canary_of_a_failing_version_rolls_back_and_raises_an_alert(server: Server) -> None:
    assert ask(server) == "tiny-v1"
    op = start(server, "bad", "canary", initial_percentage=50, period="10m")
    until_started(server, op["operation_id"])
    # The dashboard's one request: every versioned model, its rollout with the steps.
    (shown,) = admin(server, "versions")["models"]
    assert (shown["model"], shown["rollout"]["operation_id"]) == ("tiny", op["operation_id"])
    assert shown["rollout"]["steps"][0] == 0.5
    assert {v["version"] for v in shown["versions"]} == {"v1", "v2", "bad"}
    outcomes: Counter[str] = Counter()
    for _ in range(120):
        try:
            outcomes[ask(server)] += 1
        except openai.InternalServerError:
            outcomes["failed"] += 1
        if admin(server, f"rollouts/{op['operation_id']}")["status"] != "running":
            break
    ended = until_ended(server, op["operation_id"])
    assert ended["status"] == "rolled_back", ended
    assert "error_rate" in ended["reason"]
    assert outcomes["tiny-bad"] > 0
    assert outcomes["failed"] > 0
    # Back on the source at once: every request from now on is v1's, and it succeeds.
    assert {ask(server) for _ in range(10)} == {"tiny-v1"}
    versions = admin(server, "models/tiny/versions")
    assert versions["weights"] == {"v1": 1.0}
    assert versions["rollout"] is None
    alerts = admin(server, "alerts")["alerts"]
    assert [(a["model_id"], a["version"], a["level"]) for a in alerts] == [
        ("tiny", "bad", "critical")
    ]
    health = {(s["model_id"], s["version"]): s for s in admin(server, "health")["series"]}
    assert health[("tiny", "bad")]["errors"] >= 3
    (shown,) = admin(server, "versions")["models"]
    bad = next(v for v in shown["versions"] if v["version"] == "bad")
    assert bad["health"]["level"] == "critical"
    assert bad["health"]["errors"] == health[("tiny", "bad")]["errors"]
    assert bad["health"]["p95"] is not None
    assert shown["rollout"] is None
    kinds = [e["kind"] for e in admin(server, "events?limit=1000")["events"]]
    assert "alert" in kinds
    assert "route_changed" in kinds
    assert "rollout" in kinds
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert (
        'modelpool_rollouts_total{model="tiny",status="rolled_back",strategy="canary"} 1.0'
        in metrics
    )
    assert 'modelpool_alerts_total{level="critical",model="tiny",version="bad"} 1.0' in metrics
    assert 'modelpool_version_traffic_share{model="tiny",version="v1"} 1.0' in metrics
    assert 'modelpool_version_health_level{model="tiny",version="bad"} 2.0' in metrics


def test_switch_pin_sticky_rollback_abort_and_runtime_versions(server: Server) -> None:
    done = until_ended(server, start(server, "v2", "immediate")["operation_id"])
    assert done["status"] == "completed"
    assert {ask(server) for _ in range(5)} == {"tiny-v2"}
    assert ask(server, "tiny@v1") == "tiny-v1"  # a pin reaches any version
    back = admin(server, "models/tiny/rollback", "POST")
    assert (back["source"], back["target"]) == ("v2", "v1")
    assert until_ended(server, back["operation_id"])["status"] == "completed"
    assert ask(server) == "tiny-v1"

    ab = start(server, "v2", "ab", percentage=50, duration="10m")
    until_started(server, ab["operation_id"])
    seen = {user: {ask(server, **{"X-Sticky-Key": user}) for _ in range(3)} for user in "abcdefgh"}
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert {v for versions in seen.values() for v in versions} == {"tiny-v1", "tiny-v2"}
    aborted = admin(server, f"rollouts/{ab['operation_id']}/abort", "POST")
    assert aborted["status"] == "aborted"
    admin(server, f"rollouts/{ab['operation_id']}/abort", "POST", status=409)
    assert {ask(server, **{"X-Sticky-Key": user}) for user in "abcdefgh"} == {"tiny-v1"}

    added = admin(
        server,
        "models/tiny/versions",
        "POST",
        status=201,
        json={"version": "v3", "settings": tiny("tiny-v3"), "author": "ana", "notes": "n"},
    )
    assert (added["name"], added["origin"], added["author"]) == ("tiny@v3", "runtime", "ana")
    assert ask(server, "tiny@v3") == "tiny-v3"
    names = [m.id for m in openai.OpenAI(base_url=server.v1, api_key="x").models.list().data]
    assert "tiny@v3" in names
    removed = admin(server, "models/tiny/versions/v3", "DELETE")
    assert removed == {"model": "tiny", "version": "v3", "removed": True}
    listed = [op["status"] for op in admin(server, "rollouts?model=tiny")["operations"]]
    assert listed == ["aborted", "completed", "completed"]


def test_refusals_carry_every_problem(server: Server) -> None:
    body = {
        "model": "tiny",
        "target_version": "v9",
        "strategy": "canary",
        "config": {"initial_percentag": 5},
    }
    refused = admin(server, "rollouts", "POST", status=409, json=body)["error"]
    assert refused["code"] == "refused"
    assert len(refused["problems"]) == 2
    check = admin(server, "rollouts/validate", "POST", json=body)
    assert check["valid"] is False
    assert check["errors"] == refused["problems"]

    bad = {"version": "v3", "settings": {"comand": ["x"]}}
    invalid = admin(server, "models/tiny/versions", "POST", status=422, json=bad)["error"]
    assert [i["path"] for i in invalid["issues"]] == ["versions.v3.comand"]
    assert "did you mean 'command'" in invalid["issues"][0]["message"]
    dup = {"version": "v2", "settings": {}}
    assert (
        "already registered"
        in admin(server, "models/tiny/versions", "POST", status=409, json=dup)["error"]["message"]
    )
    kept = admin(server, "models/tiny/versions/v2", "DELETE", status=409)["error"]
    assert any("config file" in p for p in kept["problems"])
    assert admin(server, "models/nope/versions", status=404)["error"]["code"] == "model_not_found"
    assert admin(server, "rollouts/op-nope", status=404)["error"]["code"] == "operation_not_found"
    assert admin(server, "models/tiny/versions/v9", "DELETE", status=404)["error"]["code"] == (
        "version_not_found"
    )
    nothing = admin(server, "models/tiny/rollback", "POST", status=409)["error"]
    assert "nothing to roll back" in nothing["message"]
    # Nothing moved.
    assert admin(server, "models/tiny/versions")["weights"] == {"v1": 1.0}
