"""``backend: remote`` through a real ``modelpool serve``, used with the official ``openai``
client: models served by OpenAI-compatible servers modelpool does not start.

The remote servers are ``tiny_server.py`` processes this test starts itself on
127.0.0.1, one requiring an API key and its own name for the model, as a hosted API
does. A local model whose server cannot start falls back to the remote one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from server_process import Server, free_port, running_server

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
KEY = "sk-test-5f1e0c9a7d2b4e8f"
"""The remote server's key: handed to modelpool in its environment, never shown."""
READ_TIMEOUT = 1.0
DEADLINE = 20.0
"""Seconds a health change may take to show (checked every 0.2 s)."""


class Remote:
    """A tiny server playing a remote one, on a port of its own that outlives restarts."""

    def __init__(self, name: str, *flags: str) -> None:
        self.name, self.flags, self.port = name, flags, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        command = [sys.executable, TINY, "--port", str(self.port), "--name", self.name]
        self.process = subprocess.Popen(
            [*command, *self.flags], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "listening on PORT": it serves from now
        assert line.startswith(b"listening"), line

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None


@pytest.fixture(scope="module")
def remotes() -> Iterator[dict[str, Remote]]:
    found = {
        "far": Remote("far", "--api-key", KEY, "--expect-model", "far-model"),
        "flaky": Remote("flaky"),
    }
    for remote in found.values():
        remote.start()
    try:
        yield found
    finally:
        for remote in found.values():
            remote.stop()


def remote(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "remote",
        "url": url,
        "health_interval": 0.2,
        "unhealthy_after": 1,
        "timeouts": {"connect": 2, "read": READ_TIMEOUT},
        **extra,
    }


def local(name: str, *flags: str, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", name, *flags]
    return {"backend": "process", "command": command, "memory": "50MB", "device": "cpu", **extra}


@pytest.fixture(scope="module")
def server(remotes: dict[str, Remote]) -> Iterator[Server]:
    models = {
        "far": remote(remotes["far"].url, api_key="${REMOTE_KEY}", model="far-model"),
        "flaky": remote(remotes["flaky"].url),
        "keyless": remote(remotes["far"].url),  # the same server, without the key
        "broken": local("broken", "--exit-at-start", "1", fallback="far"),
        "near": local("near", "--print-auth"),
    }
    config = {
        "pool": {"budgets": {"cpu": "1GB"}, "restart_backoff": 0.1, "max_restart_backoff": 0.5},
        "models": models,
    }
    with running_server(config, env={"REMOTE_KEY": KEY}) as running:
        yield running


@pytest.fixture
def api(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0) as opened:
        yield opened


def hi(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def admin(server: Server, path: str, method: str = "GET") -> Any:
    answer = httpx.request(method, f"{server.url}/admin/{path}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_chat_and_streaming_through_a_remote_model(server: Server, api: openai.OpenAI) -> None:
    answer = api.chat.completions.create(**hi("far"))
    assert answer.choices[0].message.content == "far: hi"
    stream = api.chat.completions.create(**hi("far"), stream=True)
    parts = [chunk.choices[0].delta.content or "" for chunk in stream]
    assert "".join(parts) == "far: hi 0far: hi 1far: hi 2"
    found = admin(server, "models/far")
    assert found["status"] == "ready"
    assert found["memory_bytes"] == 0  # it books nothing here
    assert found["backend"] == "remote"
    models = {m.id for m in api.models.list()}
    assert {"far", "flaky", "broken"} <= models
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'modelpool_requests_total{endpoint="chat/completions",model="far",status="200"}' in (
        metrics
    )


def test_the_key_goes_to_the_remote_only_and_is_never_shown(
    server: Server, api: openai.OpenAI
) -> None:
    # The remote answers only with the key: its answering shows the key went to it.
    assert api.chat.completions.create(**hi("far")).choices[0].message
    # Without it, the same server refuses: the model does not load, and says why.
    with pytest.raises(openai.APIStatusError) as refused:
        api.chat.completions.create(**hi("keyless"))
    assert refused.value.status_code == 503
    assert "answered 401 (check api_key)" in admin(server, "models/keyless")["last_error"]
    # A server modelpool starts gets no key.
    api.chat.completions.create(**hi("near"))
    assert "near: authorization absent" in admin(server, "models/near/logs")["lines"]
    # A remote that echoes the key in an error: the client and the operator see it scrubbed.
    with pytest.raises(openai.BadRequestError) as echoed:
        api.chat.completions.create(**hi("far"), extra_body={"tiny_error": "echo_key"})
    assert "<api_key>" in echoed.value.message
    assert KEY not in echoed.value.message
    admin(server, "models/far/load", "POST")  # audited
    shown = [
        server.log(),
        json.dumps(admin(server, "models/far")),
        json.dumps(admin(server, "models")),
        json.dumps(admin(server, "status")),
        json.dumps(admin(server, "events")),
        json.dumps(admin(server, "audit")),
        httpx.get(f"{server.url}/metrics", timeout=10).text,
    ]
    assert "<api_key>" in shown[1]  # the echoed error, kept for the operator
    for text in shown:
        assert KEY not in text


def test_an_upstream_error_is_passed_on_cleaned_or_replaced(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as shaped:
        api.chat.completions.create(**hi("far"), extra_body={"tiny_error": "openai"})
    assert shaped.value.status_code == 400
    assert shaped.value.code == "context_length"
    assert "<path>" in shaped.value.message
    assert "/srv/models" not in shaped.value.message
    with pytest.raises(openai.APIStatusError) as page:
        api.chat.completions.create(**hi("far"), extra_body={"tiny_error": "html"})
    assert page.value.status_code == 502
    assert "answered with an error (HTTP 502)" in page.value.message
    assert "<html>" not in page.value.message


def test_a_remote_that_is_too_slow_is_our_504(api: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as slow:
        api.chat.completions.create(**hi("far"), extra_body={"tiny_delay": 5})
    assert slow.value.status_code == 504
    assert "did not answer in time" in slow.value.message
    assert f"read {READ_TIMEOUT:g}s" in slow.value.message
    assert time.monotonic() - started < 4  # given up after the read timeout, not 5 s
    stream = api.chat.completions.create(
        **hi("far"), stream=True, extra_body={"tiny_chunk_seconds": 3, "tiny_chunks": 2}
    )
    with pytest.raises(openai.APIError, match=r"sent nothing for 1s \(timeouts.read\)"):
        for _ in stream:
            pass


def test_a_local_model_that_cannot_load_is_served_by_its_fallback(
    server: Server, api: openai.OpenAI
) -> None:
    raw = api.chat.completions.with_raw_response.create(**hi("broken"))
    assert raw.headers["x-modelpool-served-by"] == "far"
    assert raw.parse().choices[0].message.content == "far: hi"  # as far-model, with the key
    events = admin(server, "events")["events"]
    fallbacks = [e for e in events if e["kind"] == "fallback" and e["model"] == "broken"]
    assert fallbacks[-1]["fallback"] == "far"
    assert fallbacks[-1]["served"] is True
    assert "broken" in fallbacks[-1]["reason"]
    assert admin(server, "models/broken")["status"] == "failed"
    # Streamed too, while the local model waits out its backoff or fails again.
    stream = api.chat.completions.create(**hi("broken"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream).startswith("far: hi")
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'modelpool_fallbacks_total{fallback="far",model="broken",served="true"}' in metrics


def test_a_remote_that_goes_down_is_a_clear_503_and_serves_again_once_back(
    server: Server, api: openai.OpenAI, remotes: dict[str, Remote]
) -> None:
    flaky = remotes["flaky"]
    assert api.chat.completions.create(**hi("flaky")).choices[0].message.content
    flaky.stop()
    found = wait_for(server, "flaky", "failed")
    assert "was refused" in found["last_error"]
    with pytest.raises(openai.APIStatusError) as down:
        api.chat.completions.create(**hi("flaky"))
    assert down.value.status_code == 503
    assert down.value.code == "remote_unavailable"
    assert "The remote server of model 'flaky' is not answering" in down.value.message
    flaky.start()
    deadline = time.monotonic() + DEADLINE
    statuses = []
    while True:  # the next try comes after the backoff (at most 0.5 s here)
        answer = httpx.post(f"{server.v1}/chat/completions", json=hi("flaky"), timeout=10)
        if answer.status_code == 200:
            break
        statuses.append(answer.status_code)
        assert time.monotonic() < deadline, "the remote never served again"
        time.sleep(0.1)
    assert set(statuses) <= {503}
    assert answer.json()["choices"][0]["message"]["content"] == "flaky: hi"
    assert admin(server, "models/flaky")["status"] == "ready"


def wait_for(server: Server, model: str, status: str) -> dict[str, Any]:
    """The model's admin view once it shows ``status`` (its health is polled)."""
    deadline = time.monotonic() + DEADLINE
    while (found := admin(server, f"models/{model}"))["status"] != status:
        assert time.monotonic() < deadline, f"{model} is still {found['status']}"
        time.sleep(0.1)
    return found
