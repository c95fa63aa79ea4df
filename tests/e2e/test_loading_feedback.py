"""A client is never left guessing while its model loads, through a real ``modelpool
serve`` whose models are real server processes (``tiny_server.py``) that take 5 s to
start listening, as a large model's server takes its time reading its weights.

A streamed request gets its 200 at once and SSE comments while it waits (so a client
with a 2 s read timeout keeps going), then the answer; a load that fails mid-wait ends
the stream with an error event the ``openai`` package raises; a request that is not
streamed and gives up waiting gets a ``Retry-After`` from the measured load time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from server_process import Server, running_server

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
LOAD_SECONDS = 5.0
READ_TIMEOUT = httpx.Timeout(2.0, connect=2.0)
"""A client that gives up when 2 s pass without a byte."""
OPENAI_TIMEOUT = 2.0
"""The same for the ``openai`` package (its own HTTP stack: a number, every phase)."""


def tiny(name: str, *flags: str) -> dict[str, Any]:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", name, *flags]
    return {"backend": "process", "command": command, "memory": "50MB", "device": "cpu"}


def slow(name: str) -> dict[str, Any]:
    return tiny(name, "--start-delay", str(LOAD_SECONDS))


def failing(name: str) -> dict[str, Any]:
    return tiny(name, "--start-delay", "2", "--exit-at-start", "1")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """Defaults but the models: each test has models of its own, unloaded."""
    models = {
        "slow-raw": slow("slow-raw"),
        "slow-openai": slow("slow-openai"),
        "slow-news": slow("slow-news"),
        "broken-raw": failing("broken-raw"),
        "broken-openai": failing("broken-openai"),
        "slow-left": slow("slow-left"),
        "quick-refusing": tiny("quick-refusing"),
    }
    with running_server({"pool": {"budgets": {"cpu": "1GB"}}, "models": models}) as running:
        yield running


def stream_lines(server: Server, model: str, **extra: Any) -> tuple[list[str], float, bool]:
    """The raw lines of a streamed chat answer, the seconds its headers took, and
    whether the body ended cleanly (False: aborted)."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    body |= extra
    lines: list[str] = []
    started = time.monotonic()
    url = f"{server.v1}/chat/completions"
    with httpx.stream("POST", url, json=body, timeout=READ_TIMEOUT) as r:
        headers_after = time.monotonic() - started
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        try:
            lines.extend(line for line in r.iter_lines() if line)  # blank: an event's end
        except httpx.RemoteProtocolError:  # the chunked body never ended
            return lines, headers_after, False
    return lines, headers_after, True


def test_a_streamed_request_gets_keepalive_comments_then_the_answer(server: Server) -> None:
    started = time.monotonic()
    lines, headers_after, clean = stream_lines(server, "slow-raw")
    took = time.monotonic() - started
    assert took >= LOAD_SECONDS - 0.5, "the model did not take its time to load"
    assert headers_after < 1.0  # at once, not after the load
    comments = [line for line in lines if line.startswith(":")]
    assert comments[0] == ": loading slow-raw (0 s)"
    assert len(comments) >= int(LOAD_SECONDS) - 1  # one a second (the default)
    assert comments[-1].startswith(": loading slow-raw (")
    assert comments[-1].endswith(" s)")
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert [chunk["choices"][0]["delta"]["content"] for chunk in data] == [
        "slow-raw: hi 0",
        "slow-raw: hi 1",
        "slow-raw: hi 2",
    ]
    assert lines[-1] == "data: [DONE]"
    assert clean
    assert lines.index(comments[-1]) < lines.index(next(x for x in lines if x.startswith("data")))


def test_the_openai_client_with_a_2s_read_timeout_streams_through_a_5s_load(
    server: Server,
) -> None:
    client = openai.OpenAI(
        base_url=server.v1, api_key="unused", max_retries=0, timeout=OPENAI_TIMEOUT
    )
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="slow-openai", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    parts = [chunk.choices[0].delta.content or "" for chunk in stream]
    assert time.monotonic() - started >= LOAD_SECONDS - 0.5
    assert "".join(parts) == "slow-openai: hi 0slow-openai: hi 1slow-openai: hi 2"


def test_a_load_that_fails_mid_wait_ends_the_stream_with_an_error_event(server: Server) -> None:
    lines, _, clean = stream_lines(server, "broken-raw")
    assert lines[0] == ": loading broken-raw (0 s)"
    assert "event: error" in lines
    error = json.loads(lines[lines.index("event: error") + 1][6:])["error"]
    assert error["code"] == "load_failed"
    assert error["type"] == "server_error"
    assert "broken-raw" in error["message"]
    assert "data: [DONE]" not in lines
    assert not clean  # aborted: no client can take it for a complete answer


def test_an_error_answer_after_the_load_ends_the_stream_with_it_cleaned(server: Server) -> None:
    lines, _, clean = stream_lines(server, "quick-refusing", tiny_error="openai")
    assert lines[0] == ": loading quick-refusing (0 s)"  # it had to load: kept alive
    error = json.loads(lines[lines.index("event: error") + 1][6:])["error"]
    assert (error["code"], error["param"]) == ("context_length", "messages")
    assert "/srv/models" not in error["message"]  # cleaned as any error answer
    assert "data: [DONE]" not in lines
    assert not clean


def test_the_openai_client_raises_when_the_load_fails_mid_wait(server: Server) -> None:
    client = openai.OpenAI(
        base_url=server.v1, api_key="unused", max_retries=0, timeout=OPENAI_TIMEOUT
    )
    stream = client.chat.completions.create(
        model="broken-openai", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as raised:
        list(stream)
    assert "broken-openai" in raised.value.message
    assert "failed to load" in raised.value.message


def test_a_client_that_leaves_while_it_waits_holds_nothing(server: Server) -> None:
    body = {"model": "slow-left", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, timeout=10) as r:
        first = next(line for line in r.iter_lines() if line)
    assert first == ": loading slow-left (0 s)"  # then the connection is closed
    view = f"{server.url}/admin/models/slow-left"
    deadline = time.monotonic() + 30
    while (model := httpx.get(view, timeout=10).json())["status"] == "loading":
        assert time.monotonic() < deadline, model
        time.sleep(0.1)  # polling the API as an operator would
    assert (model["leases"], model["waiting"]) == (0, 0), model
    assert "Traceback" not in server.log()


def test_loading_messages_come_as_reasoning_content() -> None:
    models = {"slow-news": tiny("slow-news", "--start-delay", "2")}
    config = {
        "server": {"loading_messages": True, "loading_keepalive": "0.5s"},
        "pool": {"budgets": {"cpu": "1GB"}},
        "models": models,
    }
    with running_server(config) as running:
        client = openai.OpenAI(base_url=running.v1, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="slow-news", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = list(stream)
    thinking = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks]
    news = "".join(part for part in thinking if part)
    assert news.startswith("Loading slow-news...")
    assert " 1 s..." in news
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == "slow-news: hi 0slow-news: hi 1slow-news: hi 2"


def test_a_503_after_a_wait_says_when_the_load_should_be_over() -> None:
    wait = 2.0
    config = {
        "pool": {"budgets": {"cpu": "1GB"}, "wait_timeout": f"{wait}s"},
        # Longer than the fixed 5 s Retry-After of other 503s, to tell the two apart.
        "models": {"measured": tiny("measured", "--start-delay", "9")},
    }
    with running_server(config) as running:
        admin = f"{running.url}/admin/models/measured"
        assert httpx.post(f"{admin}/load", params={"wait": "false"}, timeout=10).is_success
        deadline = time.monotonic() + 30
        while (view := httpx.get(admin, timeout=10).json())["status"] != "ready":
            assert time.monotonic() < deadline, view
            time.sleep(0.1)  # polling the API as an operator would
        measured = view["last_load_seconds"]
        assert measured >= 9
        assert httpx.post(f"{admin}/unload", timeout=30).is_success
        body = {"model": "measured", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{running.v1}/chat/completions", json=body, timeout=30)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "wait_timeout"
    retry_after = int(answer.headers["retry-after"])
    # The load had run about ``wait`` seconds of its measured length when the wait ended.
    assert measured - wait - 1 <= retry_after <= measured - wait + 1.5
