"""Which routes the audit log records and what it keeps of them, through the server's
application around a pool of fake (in-process) models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from modelpool.config import ModelSpec, ServerSettings
from modelpool.core.pool import ModelPool
from modelpool.http.app import create_app
from modelpool.http.audit import fingerprint

KEY = "sk-unit-audit"
HEADERS = {"authorization": f"Bearer {KEY}"}
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
NOT_OPERATIONS = {("POST", "/admin/rollouts/validate")}
"""Changing methods that change nothing: a dry run."""


def app_client(audit_path: Path) -> TestClient:
    specs = [
        ModelSpec(id="chat", backend="fake", memory="1GB", device="cpu"),
        ModelSpec(id="emb", backend="fake", memory="1GB", device="cpu"),
    ]
    pool = ModelPool(specs, budgets={"cpu": "4GB"}, strategy="lru")
    server = ServerSettings(api_keys=[KEY])
    app = create_app(pool, server, audit_path=audit_path)
    return TestClient(app, base_url="http://127.0.0.1:8080", headers=HEADERS)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with app_client(tmp_path / "state" / "audit.log") as client:
        yield client


def entries(client: TestClient, limit: int = 100) -> list[dict[str, Any]]:
    answer = client.get("/admin/audit", params={"limit": limit})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["entries"]
    return found


def test_every_route_that_changes_the_server_is_recorded(client: TestClient) -> None:
    """Every changing route of the schema but the OpenAI API's (requests, not
    operations): an alias of an admin route must be recorded as the route is."""
    paths = client.get("/admin/openapi.json").json()["paths"]
    changing = sorted(
        (method.upper(), path)
        for path, methods in paths.items()
        for method in methods
        if not path.startswith("/v1/") and method.upper() in CHANGING
    )
    assert len(changing) >= 11
    for method, path in changing:
        if (method, path) in NOT_OPERATIONS:
            continue
        concrete = path.replace("{model}", "chat").replace("{version}", "v9")
        concrete = concrete.replace("{operation_id}", "op-unknown")
        before = len(entries(client, 1000))
        answer = client.request(method, concrete, json={})
        after = entries(client, 1000)
        assert len(after) == before + 1, f"{method} {path} was not recorded"
        assert after[0]["status"] == answer.status_code
        assert after[0]["caller"] == {"address": "testclient", "key": fingerprint(KEY)}
    operations = {entry["operation"] for entry in entries(client, 1000)}
    assert operations == {
        "load",
        "preload",
        "unload",
        "pin",
        "unpin",
        "strategy",
        "register",
        "unregister",
        "rollout",
        "abort",
        "rollback",
        "reload",
    }


def test_reading_routes_and_dry_runs_are_not_recorded(client: TestClient) -> None:
    for path in ("/admin/status", "/admin/models", "/admin/models/chat", "/admin/events"):
        assert client.get(path).status_code == 200
    body = {"model": "chat", "target_version": "v1"}
    assert client.post("/admin/rollouts/validate", json=body).status_code == 200
    assert entries(client) == []


def test_an_entry_keeps_what_was_asked_and_the_answers_error(client: TestClient) -> None:
    assert client.post("/admin/models/chat/pin").status_code == 200
    refused = client.post("/admin/rollouts", json={"model": "chat", "target_version": 7})
    assert refused.status_code == 422
    bad = client.put("/admin/strategy", json={"strategy": "nope", "options": {"x": 1}})
    assert bad.status_code == 400

    strategy, rollout, pin = entries(client)
    assert pin["request"] == {"model": "chat"}
    assert (pin["outcome"], pin["status"], "error" in pin) == ("ok", 200, False)
    assert rollout["request"] == {"model": "chat", "version": 7}
    assert (rollout["outcome"], rollout["status"]) == ("error", 422)
    assert rollout["error"].startswith("body.target_version:")
    assert strategy["request"] == {"strategy": "nope", "settings": {"x": 1}}
    assert strategy["status"] == 400
    assert "nope" in strategy["error"]


def test_secrets_in_settings_are_redacted_and_large_ones_bounded(
    client: TestClient, tmp_path: Path
) -> None:
    options = {"api_token": "hunter2", "nested": [{"password": "hunter3"}], "ok": 1}
    client.put("/admin/strategy", json={"strategy": "lru", "options": options})
    huge = {"fail_message": "x" * 20_000}
    client.post("/admin/models/chat/versions", json={"version": "v2", "settings": huge})

    register, strategy = entries(client, 2)
    assert strategy["request"]["settings"] == {
        "api_token": "<redacted>",
        "nested": [{"password": "<redacted>"}],
        "ok": 1,
    }
    assert register["status"] == 201
    kept = register["request"]["settings"]
    assert isinstance(kept, str)
    assert len(kept) < 2100
    assert kept.endswith("more characters)")
    written = (tmp_path / "state" / "audit.log").read_text()
    assert "hunter" not in written
    assert KEY not in written
    assert all(json.loads(line) for line in written.splitlines())


def test_a_log_that_cannot_be_written_never_fails_the_operation_and_is_counted(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    with app_client(blocker / "audit.log") as client:
        assert client.post("/admin/models/chat/pin").status_code == 200
        assert client.post("/admin/models/chat/unpin").status_code == 200
        metrics = client.get("/metrics").text
        assert entries(client) == []
    assert "modelpool_audit_write_failures_total 2.0" in metrics


def test_a_server_without_an_audit_log_answers_an_empty_one(tmp_path: Path) -> None:
    pool = ModelPool(
        [ModelSpec(id="chat", backend="fake", memory="1GB", device="cpu")],
        budgets={"cpu": "4GB"},
    )
    with TestClient(create_app(pool, ServerSettings()), base_url="http://127.0.0.1:8080") as c:
        assert c.post("/admin/models/chat/pin").status_code == 200
        assert c.get("/admin/audit").json() == {"entries": [], "path": None}
    assert not list(tmp_path.iterdir())
