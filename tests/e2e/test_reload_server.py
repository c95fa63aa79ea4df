"""Config changes without a restart, through ``modelpool serve`` as a user runs it:
``POST /admin/reload``, ``modelpool reload``, SIGHUP and ``serve --watch``.

Each test of the first server starts from ``BASE`` (reloaded, so the server is back to
it) and changes one kind of thing. The second server runs real model processes
(``tiny_server.py``) under a steady stream of requests from the ``openai`` client
while its config is reloaded, with ``--watch`` on.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from server_process import Server, modelpool_cli, running_server

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
GB = 1000**3
DEADLINE = 15.0
"""Seconds a polled condition may take before the test fails."""


def fake(memory: str = "2GB", **fields: Any) -> dict[str, Any]:
    return {"backend": "fake", "memory": memory, "device": "cpu", **fields}


def tiny(name: str) -> dict[str, Any]:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", name]
    return {"backend": "process", "command": command, "memory": "50MB", "device": "cpu"}


BASE: dict[str, Any] = {
    "pool": {"strategy": "lru", "budgets": {"cpu": "8GB"}},
    "models": {"chat": {**tiny("chat"), "tags": ["chat"]}, "coder": fake()},
}


def config_file(server: Server) -> Path:
    """The file ``running_server`` wrote and the server reads again."""
    return server.log_path.parent / "modelpool.yaml"


def write(server: Server, config: dict[str, Any]) -> None:
    """Replace the server's config file, keeping the state folder it runs with."""
    path = config_file(server)
    state = yaml.safe_load(path.read_text())["pool"]["state_dir"]
    data = {**config, "pool": {**config.get("pool", {}), "state_dir": state}}
    path.write_text(yaml.safe_dump(data))


def reload(server: Server, config: dict[str, Any]) -> dict[str, Any]:
    """Write ``config`` and ``POST /admin/reload``; the diff it answered."""
    write(server, config)
    answer = httpx.post(f"{server.url}/admin/reload", timeout=60)
    assert answer.status_code == 200, answer.text
    diff: dict[str, Any] = answer.json()
    return diff


def with_models(**changes: dict[str, Any] | None) -> dict[str, Any]:
    """BASE with some models changed (replaced), added, or removed (None)."""
    models = {**BASE["models"], **changes}
    return {**BASE, "models": {k: v for k, v in models.items() if v is not None}}


def model(server: Server, model_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/admin/models/{model_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def load(server: Server, model_id: str) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/admin/models/{model_id}/load", timeout=60)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def events(server: Server, kind: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.url}/admin/events", params={"limit": 1000}, timeout=10)
    return [e for e in answer.json()["events"] if e["kind"] == kind]


def chat(client: openai.OpenAI, model_id: str) -> str:
    answer = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "hello"}]
    )
    return answer.choices[0].message.content or ""


def until(condition: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll ``condition`` until it is truthy; its value. Fails after ``deadline`` s."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # polling a server that pushes nothing for this
    raise AssertionError(f"not within {deadline}s: {what}")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(BASE) as running:
        yield running


@pytest.fixture
def base(server: Server) -> Server:
    """The server back at BASE, whatever the test before changed."""
    reload(server, BASE)
    return server


def test_a_new_model_is_served_at_once(base: Server) -> None:
    diff = reload(base, with_models(newcomer=tiny("newcomer")))
    assert diff["added"] == ["newcomer"]
    assert diff["changed"] is True
    client = openai.OpenAI(base_url=base.v1, api_key="none", max_retries=0)
    assert "newcomer" in chat(client, "newcomer")
    assert model(base, "newcomer")["status"] == "ready"


def test_a_removed_model_is_unloaded_and_forgotten(base: Server) -> None:
    load(base, "coder")
    diff = reload(base, with_models(coder=None))
    assert diff["removed"] == ["coder"]
    assert httpx.get(f"{base.url}/admin/models/coder").status_code == 404
    client = openai.OpenAI(base_url=base.v1, api_key="none", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        chat(client, "coder")
    assert events(base, "model_removed")[-1]["model"] == "coder"


def test_a_changed_setting_that_needs_it_reloads_the_model(base: Server) -> None:
    before = load(base, "coder")
    diff = reload(base, with_models(coder=fake("3GB", load_seconds=0.1)))
    assert diff["reloaded"] == {"coder": ["options", "memory"]}
    after = model(base, "coder")
    assert after["status"] == "ready"  # loaded again, with its new settings
    assert after["load_count"] == before["load_count"] + 1
    assert after["memory_bytes"] == 3 * GB


def test_a_metadata_change_keeps_the_model_loaded(base: Server) -> None:
    before = load(base, "chat")
    changed = {**tiny("chat"), "tags": ["chat", "general"], "aliases": ["talk"]}
    changed |= {"priority": 1, "ttl": 600}
    diff = reload(base, with_models(chat=changed))
    assert diff["updated"] == {"chat": ["priority", "ttl", "tags", "aliases"]}
    assert diff["reloaded"] == {}
    after = model(base, "chat")
    assert after["status"] == "ready"
    assert after["load_count"] == before["load_count"]  # not loaded again
    assert after["tags"] == ["chat", "general"]
    assert after["priority"] == 1
    client = openai.OpenAI(base_url=base.v1, api_key="none", max_retries=0)
    assert "chat" in chat(client, "talk")  # the new alias answers


def test_budget_and_strategy_change_live(base: Server) -> None:
    two = with_models(second=fake())
    reload(base, two)
    load(base, "coder")
    load(base, "second")
    pool = {"strategy": "lfu", "budgets": {"cpu": "3GB"}, "max_models": 3}
    diff = reload(base, {**two, "pool": pool})
    assert diff["settings"]["strategy"] == {"old": "lru", "new": "lfu"}
    assert diff["settings"]["budgets"] == {"old": {"cpu": 8 * GB}, "new": {"cpu": 3 * GB}}
    status = httpx.get(f"{base.url}/admin/status").json()
    assert status["strategy"] == "lfu"
    assert status["memory_info"]["cpu"]["budget"] == 3 * GB

    def one_loaded() -> bool:
        # Two 2 GB models no longer fit in 3 GB: one is evicted.
        loaded = httpx.get(f"{base.url}/admin/status").json()["loaded_models"]
        return len(set(loaded) & {"coder", "second"}) == 1

    until(one_loaded, "a model evicted for the smaller budget")


def test_a_server_setting_is_reported_as_needing_a_restart(base: Server) -> None:
    diff = reload(base, {**BASE, "server": {"port": 1, "access_log": False}})
    assert diff["needs_restart"] == ["server.port", "server.access_log"]
    assert diff["changed"] is False
    assert httpx.get(f"{base.url}/readyz").status_code == 200  # still where it was


def test_an_invalid_file_is_refused_with_every_problem_and_nothing_changes(
    base: Server,
) -> None:
    load(base, "chat")
    bad = {
        "pool": {"strategy": "nosuch", "budgets": {"cpu": "8GB"}},
        "models": {"chat": fake("lots"), "coder": fake(device="gpu9"), "new": fake()},
    }
    write(base, bad)
    answer = httpx.post(f"{base.url}/admin/reload", timeout=30)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_config"
    issues = {issue["path"]: issue for issue in error["issues"]}
    assert set(issues) == {"pool.strategy", "models.chat.memory", "models.coder.device"}
    assert all(
        issue["line"] and issue["source"].endswith("modelpool.yaml") for issue in issues.values()
    )

    cli = modelpool_cli("reload", "--url", base.url)
    assert cli.returncode == 2
    for path in issues:
        assert path in cli.stderr
    assert ".yaml:" in cli.stderr  # file:line for each
    as_json = modelpool_cli("reload", "--url", base.url, "--json")
    assert as_json.returncode == 2
    assert {i["path"] for i in json.loads(as_json.stdout)["issues"]} == set(issues)

    status = httpx.get(f"{base.url}/admin/status").json()
    assert status["strategy"] == "lru"
    assert set(status["model_resources"]) == {"chat", "coder"}
    assert status["model_resources"]["chat"]["status"] == "ready"
    refused = events(base, "config_reloaded")[-1]
    assert refused["ok"] is False


def test_the_cli_reloads_and_shows_the_diff(base: Server) -> None:
    write(base, with_models(newcomer=fake("1GB"), coder=None))
    shown = modelpool_cli("reload", "--url", base.url)
    assert shown.returncode == 0, shown.stderr
    assert "added: newcomer" in shown.stdout
    assert "removed (drained and unloaded): coder" in shown.stdout
    again = modelpool_cli("reload", "--url", base.url, "--json")
    assert json.loads(again.stdout)["changed"] is False
    assert "nothing changed" in modelpool_cli("reload", "--url", base.url).stdout


def test_each_reload_is_one_event_and_one_audit_line_with_its_diff(base: Server) -> None:
    before = len(events(base, "config_reloaded"))
    reload(base, with_models(newcomer=fake("1GB")))
    reloaded = events(base, "config_reloaded")
    assert len(reloaded) == before + 1
    assert reloaded[-1]["added"] == ["newcomer"]
    assert reloaded[-1]["origin"] == "http"
    entry = httpx.get(f"{base.url}/admin/audit", params={"limit": 1}).json()["entries"][0]
    assert entry["operation"] == "reload"
    assert entry["status"] == 200
    assert entry["result"]["added"] == ["newcomer"]


def test_sighup_reloads_the_file(base: Server) -> None:
    before = len(events(base, "config_reloaded"))
    write(base, with_models(newcomer=fake("1GB")))
    base.process.send_signal(signal.SIGHUP)
    reloaded = until(lambda: events(base, "config_reloaded")[before:], "a reload after SIGHUP")
    assert reloaded[0]["origin"] == "sighup"
    assert reloaded[0]["added"] == ["newcomer"]
    assert model(base, "newcomer")["status"] == "unloaded"


def test_two_reloads_at_once_run_one_after_the_other(base: Server) -> None:
    write(base, with_models(newcomer=fake("1GB")))
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda _: httpx.post(f"{base.url}/admin/reload", timeout=60), range(2))
        )
    assert [a.status_code for a in answers] == [200, 200]
    added = sorted(len(a.json()["added"]) for a in answers)
    assert added == [0, 1]  # the second saw what the first applied


# --- real model processes under load, and --watch -----------------------------------


LIVE: dict[str, Any] = {
    "pool": {"strategy": "lru", "budgets": {"cpu": "1GB"}},
    "models": {"steady": tiny("steady"), "swapped": tiny("swapped")},
}


@pytest.fixture(scope="module")
def live() -> Iterator[Server]:
    with running_server(LIVE, args=("--watch",)) as running:
        yield running


def test_resident_models_keep_serving_under_load_through_reloads(live: Server) -> None:
    load(live, "steady")
    swapped = load(live, "swapped")
    stop = threading.Event()
    served: dict[str, int] = {"steady": 0, "swapped": 0}
    failures: list[str] = []

    def keep_asking(model_id: str) -> None:
        client = openai.OpenAI(base_url=live.v1, api_key="none", max_retries=0, timeout=60)
        while not stop.is_set():
            try:
                assert model_id in chat(client, model_id)
                served[model_id] += 1
            except Exception as error:  # every failure counts against the reload
                failures.append(f"{model_id}: {type(error).__name__}: {error}")

    workers = [
        threading.Thread(target=keep_asking, args=(name,), daemon=True)
        for name in ("steady", "steady", "swapped", "swapped")
    ]
    for worker in workers:
        worker.start()
    try:
        until(lambda: min(served.values()) >= 5, "requests served before the reloads")
        added = {**LIVE["models"], "extra": tiny("extra")}
        changed = {  # metadata of steady; swapped's command line changes: reloaded
            **added,
            "steady": {**tiny("steady"), "tags": ["kept"], "priority": 2},
            "swapped": {**tiny("swapped"), "env": {"RELOADED": "1"}},
        }
        changes = [
            {**LIVE, "models": added},
            {**LIVE, "models": changed},
            {"pool": {"strategy": "lfu", "budgets": {"cpu": "900MB"}}, "models": changed},
            {**LIVE, "models": {k: v for k, v in changed.items() if k != "extra"}},  # removed
        ]
        for config in changes:
            mark = dict(served)
            write(live, config)
            answer = httpx.post(f"{live.url}/admin/reload", timeout=60)
            assert answer.status_code == 200, answer.text
            until(
                lambda mark=mark: all(served[m] > mark[m] + 3 for m in served),
                "requests served after the reload",
            )
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    assert failures == []
    steady = model(live, "steady")
    assert steady["load_count"] == 1  # never unloaded
    assert steady["tags"] == ["kept"]
    assert model(live, "swapped")["load_count"] == swapped["load_count"] + 1


def test_watch_applies_an_edited_file_within_a_second_or_so(live: Server) -> None:
    before = len(events(live, "config_reloaded"))
    config = {**LIVE, "models": {**LIVE["models"], "watched": tiny("watched")}}
    write(live, config)
    written = time.monotonic()

    def seen() -> bool:
        return httpx.get(f"{live.url}/admin/models/watched").status_code == 200

    until(seen, "the watched file's new model")
    assert time.monotonic() - written < 2.0  # polled every 0.25 s; applied at once
    reloaded = until(
        lambda: [e for e in events(live, "config_reloaded")[before:] if e["added"]],
        "the watched reload's event",
    )
    assert [e["origin"] for e in reloaded] == ["watch"]
    assert reloaded[0]["added"] == ["watched"]

    broken = {**config, "pool": {"budgets": {"cpu": "many"}}}
    write(live, broken)
    until(lambda: "not applied, 1 problem" in live.log(), "the broken file's problem in the log")
    assert "pool.budgets.cpu" in live.log()
    assert httpx.get(f"{live.url}/admin/models/watched").status_code == 200  # kept


def test_a_caller_that_leaves_does_not_cut_a_reload_short(base: Server) -> None:
    """The reload waits for a removed model's stream to end; its caller gives up first.
    The reload still finishes, and the next one finds nothing left to do."""
    load(base, "chat")
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "tiny_chunks": 12,
        "tiny_chunk_seconds": 0.25,
    }
    streamed: list[str] = []

    def stream() -> None:
        with httpx.stream("POST", f"{base.v1}/chat/completions", json=body, timeout=30) as r:
            streamed.extend(line for line in r.iter_lines() if line)

    reader = threading.Thread(target=stream)
    reader.start()
    until(lambda: model(base, "chat")["leases"] == 1, "the stream's lease")
    before = len(events(base, "config_reloaded"))
    write(base, with_models(chat=None, newcomer=fake("1GB")))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base.url}/admin/reload", timeout=httpx.Timeout(30, read=0.5))
    reader.join(30)
    assert streamed[-1] == "data: [DONE]"  # the removed model's stream ran to its end
    done = until(lambda: events(base, "config_reloaded")[before:], "the reload's event")
    assert done[0]["removed"] == ["chat"]
    assert done[0]["added"] == ["newcomer"]
    again = httpx.post(f"{base.url}/admin/reload", timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["changed"] is False


def test_a_model_that_does_not_load_again_is_reported_and_the_cli_exits_1(base: Server) -> None:
    load(base, "coder")
    write(base, with_models(coder=fake(fail_loads=1, fail_message="no such weights")))
    shown = modelpool_cli("reload", "--url", base.url, timeout=60)
    assert shown.returncode == 1, shown.stderr
    assert "reloaded: coder (options)" in shown.stdout
    assert "coder: did not load again with its new settings" in shown.stderr
    assert "no such weights" in shown.stderr
    assert model(base, "coder")["status"] == "failed"
