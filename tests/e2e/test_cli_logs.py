"""``modelpool logs`` and ``GET /admin/models/{id}/logs``: what a model's server printed,
and new lines as they come, against a real ``modelpool serve`` with a real server."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_process import Server, modelpool_cli, running_server

from modelpool.backends.logring import LogRing
from modelpool.client import ServerClient

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
CONFIG: dict[str, Any] = {
    "pool": {"budgets": {"cpu": "4GB"}},
    "models": {
        "tiny": {
            "backend": "process",
            "memory": "1GB",
            "device": "cpu",
            "command": [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}"],
        },
        "fake": {"backend": "fake", "memory": "1GB", "device": "cpu"},
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(CONFIG) as server:
        yield server


def test_logs_prints_what_the_server_printed(server: Server) -> None:
    with ServerClient(server.url) as client:
        client.load("tiny")
    result = modelpool_cli("logs", "tiny", "-n", "20", "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert "listening on" in result.stdout


def test_follow_gets_new_lines_and_ends_when_the_model_leaves(server: Server) -> None:
    seen: list[str] = []
    following, got_note = threading.Event(), threading.Event()
    with ServerClient(server.url) as client:
        client.load("tiny")

        def follow() -> None:
            with ServerClient(server.url) as follower:
                # One old line first: it says the stream is open, so the line the
                # request below adds cannot come before the follower is there.
                for line in follower.follow_logs("tiny", lines=1):
                    following.set()
                    seen.append(line)
                    if "answered HTTP" in line:
                        got_note.set()

        thread = threading.Thread(target=follow)
        thread.start()
        assert following.wait(10), "the follow stream never opened"
        # A failing answer puts a [modelpool] line in the model's log: a new line to follow.
        body = {"model": "tiny", "messages": [], "tiny_error": "html"}
        httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=10)
        assert got_note.wait(10), seen
        client.unload("tiny")
        thread.join(10)
        assert not thread.is_alive()  # the stream ended with the model


def test_logs_of_an_unknown_model_exits_4_and_a_model_without_a_log_has_none(
    server: Server,
) -> None:
    assert modelpool_cli("logs", "nope", "--url", server.url).returncode == 4
    with ServerClient(server.url) as client:
        assert client.logs("fake") == []


def test_a_ring_gives_a_follower_the_lines_after_its_place() -> None:
    ring = LogRing(3)
    ring.feed(b"a\nb\n")
    lines, place = ring.since(0)
    assert (lines, place) == (["a", "b"], 2)
    ring.feed(b"c\nd\ne\n")  # a and b fall off the ring of 3
    assert ring.since(place) == (["c", "d", "e"], 5)
    assert ring.since(5) == ([], 5)
    fresh = LogRing(3)  # the model was reloaded: a place in the old log starts over
    fresh.feed(b"x\n")
    assert fresh.since(5) == (["x"], 1)
