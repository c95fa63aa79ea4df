"""``modelpool top`` as a user runs it: on a terminal, refreshed, ``q`` quits; for
scripts, ``--iterations``."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from server_process import Server, modelpool_cli, running_server

from modelpool.cli.top_view import bar, rates
from modelpool.client import ServerClient

CONFIG: dict[str, Any] = {
    "pool": {"budgets": {"cpu": "8GB"}},
    "models": {
        "chatty": {"backend": "fake", "memory": "2GB", "device": "cpu"},
        "quiet": {"backend": "fake", "memory": "1GB", "device": "cpu"},
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(CONFIG) as server:
        yield server


def test_top_draws_devices_models_and_events_for_a_script(server: Server) -> None:
    with ServerClient(server.url) as client:
        client.load("chatty")
    result = modelpool_cli("top", "--iterations", "2", "--interval", "0.2", "--url", server.url)
    assert result.returncode == 0, result.stderr
    shown = result.stdout
    for expected in ("devices", "cpu", "chatty", "quiet", "ready", "req/s", "loaded"):
        assert expected in shown, expected


def test_q_quits_top_on_a_terminal(server: Server) -> None:
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELPOOL_")}
    environ |= {"COLUMNS": "120", "TERM": "xterm"}
    command = [sys.executable, "-m", "modelpool", "top", "--url", server.url]
    with subprocess.Popen(
        command, stdin=follower, stdout=follower, stderr=subprocess.PIPE, env=environ
    ) as run:
        os.close(follower)
        shown, deadline, pressed = b"", time.monotonic() + 30, False
        while time.monotonic() < deadline and run.poll() is None:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    shown += os.read(leader, 65536)
                except OSError:
                    break
            if not pressed and b"q quits" in shown:
                os.write(leader, b"q")
                pressed = True
        code = run.wait(10)
        os.close(leader)
    assert pressed, shown.decode(errors="replace")
    assert code == 0
    assert b"chatty" in shown


def test_requests_per_second_come_from_two_counts() -> None:
    assert rates(None, {"a": 5}, 1.0) == {}
    assert rates({"a": 5, "b": 1}, {"a": 9, "b": 1, "c": 2}, 2.0) == {"a": 2.0, "b": 0.0, "c": 1.0}


def test_a_memory_bar_fills_with_its_share() -> None:
    assert bar(0, 100, width=10).plain == "[..........]"
    assert bar(50, 100, width=10).plain == "[#####.....]"
    assert bar(150, 100, width=10).plain == "[##########]"
    assert bar(1, 0, width=4).plain == "[....]"
