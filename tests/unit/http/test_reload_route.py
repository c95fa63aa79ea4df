"""``POST /admin/reload`` through the server's application (in-process, fake models):
the refusals that never reach the pool, and the audit line."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from modelpool.config import Config, ModelSpec, ServerSettings
from modelpool.core.pool import ModelPool
from modelpool.http.app import create_app
from modelpool.http.reloader import no_reload_on_sighup

CONFIG = {
    "pool": {"strategy": "lru", "budgets": {"cpu": "4GB"}},
    "models": {
        "chat": {"backend": "fake", "memory": "1GB", "device": "cpu"},
        "emb": {"backend": "fake", "memory": "1GB", "device": "cpu"},
    },
}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "modelpool.yaml"
    data = {**CONFIG, "pool": {**CONFIG["pool"], "state_dir": str(tmp_path / "state")}}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def client(config_path: Path) -> Iterator[TestClient]:
    config = Config.load(config_path)
    pool = ModelPool.from_config(config)
    audit = config_path.parent / "state" / "audit.log"
    app = create_app(pool, config.server, audit_path=audit, config=config)
    with TestClient(app, base_url="http://127.0.0.1:8080") as test_client:
        yield test_client


def test_a_server_without_a_config_file_says_there_is_nothing_to_reload() -> None:
    pool = ModelPool(
        [ModelSpec(id="chat", backend="fake", memory="1GB", device="cpu")],
        budgets={"cpu": "4GB"},
    )
    with TestClient(create_app(pool, ServerSettings()), base_url="http://127.0.0.1") as c:
        answer = c.post("/admin/reload")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "no_config_file"
    assert "--config FILE" in answer.json()["error"]["message"]


def test_an_empty_file_is_refused_rather_than_removing_every_model(
    client: TestClient, config_path: Path
) -> None:
    config_path.write_text("\n")  # an editor saving in place empties it for a moment
    answer = client.post("/admin/reload")
    assert answer.status_code == 422
    (issue,) = answer.json()["error"]["issues"]
    assert "the file is empty" in issue["message"]
    models = client.get("/admin/models").json()["models"]
    assert [m["id"] for m in models] == ["chat", "emb"]


def test_a_reload_is_audited_with_its_diff(client: TestClient, config_path: Path) -> None:
    data = yaml.safe_load(config_path.read_text())
    del data["models"]["emb"]
    data["models"]["chat"]["tags"] = ["chat"]
    config_path.write_text(yaml.safe_dump(data))
    answer = client.post("/admin/reload")
    assert answer.status_code == 200, answer.text
    assert answer.json()["removed"] == ["emb"]
    (entry,) = client.get("/admin/audit").json()["entries"]
    assert entry["operation"] == "reload"
    assert entry["request"] == {"origin": "http", "file": str(config_path.resolve())}
    assert entry["result"]["removed"] == ["emb"]
    assert entry["result"]["updated"] == {"chat": ["tags"]}


def test_a_model_added_by_a_reload_has_its_version_and_takes_new_ones(
    client: TestClient, config_path: Path
) -> None:
    data = yaml.safe_load(config_path.read_text())
    data["models"]["added"] = {"backend": "fake", "memory": "1GB", "device": "cpu"}
    config_path.write_text(yaml.safe_dump(data))
    assert client.post("/admin/reload").json()["added"] == ["added"]
    versions = client.get("/admin/models/added/versions")
    assert versions.status_code == 200, versions.text
    assert [v["version"] for v in versions.json()["versions"]] == ["v1"]
    registered = client.post("/admin/models/added/versions", json={"version": "v2"})
    assert registered.status_code == 201, registered.text


def test_removing_a_model_with_versions_registered_at_run_time_is_refused(
    client: TestClient, config_path: Path
) -> None:
    registered = client.post("/admin/models/emb/versions", json={"version": "v2"})
    assert registered.status_code == 201, registered.text
    data = yaml.safe_load(config_path.read_text())
    del data["models"]["emb"]
    config_path.write_text(yaml.safe_dump(data))
    answer = client.post("/admin/reload")
    assert answer.status_code == 422
    (issue,) = answer.json()["error"]["issues"]
    assert issue["path"] == "models.emb"
    assert "versions registered at run time remain (v2)" in issue["message"]
    assert "emb" in [m["id"] for m in client.get("/admin/models").json()["models"]]


async def test_sighup_without_a_config_file_is_logged_rather_than_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    no_reload_on_sighup(loop)
    try:
        os.kill(os.getpid(), signal.SIGHUP)  # the default action would end this process
        deadline = loop.time() + 5
        while "nothing to reload" not in caplog.text:
            assert loop.time() < deadline, "no log line for SIGHUP"
            await asyncio.sleep(0.01)  # the handler runs on this loop's next turns
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
