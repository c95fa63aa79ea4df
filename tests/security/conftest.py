"""One real ``modelpool serve`` for the security suite, as ``tests/e2e`` starts it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parents[1]
sys.path.insert(0, str(TESTS / "e2e"))  # server_process: how the e2e tests run the CLI

from server_process import Server, running_server  # noqa: E402

TINY = str(TESTS / "integration" / "servers" / "tiny_server.py")
KEY = "Key-Secret-42"
"""The one API key: every request of the suite sends it unless a case is about keys."""
ORIGIN = "https://app.example"
TIMEOUT = 1.0
"""Header, body and keep-alive timeouts of the suite's server, in seconds: short, so the
cases that wait for them are quick."""
MAX_CONNECTIONS = 16
MAX_BODY = 2 * 1024**2


def tiny(name: str) -> dict[str, Any]:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", name]
    return {"backend": "process", "command": command, "memory": "50MB", "device": "cpu"}


def config() -> dict[str, Any]:
    """Three models under a budget that holds one: two real model servers and an
    in-process (fake) one that can only make embeddings."""
    return {
        "server": {
            "api_keys": [KEY],
            "allowed_origins": [ORIGIN],
            "header_timeout": TIMEOUT,
            "body_timeout": TIMEOUT,
            "keep_alive_timeout": TIMEOUT,
            "max_connections": MAX_CONNECTIONS,
            "max_body": MAX_BODY,
        },
        "pool": {"strategy": "lru", "budgets": {"cpu": "60MB"}},
        "models": {
            "tiny": tiny("tiny"),
            "crashy": tiny("crashy"),
            "embedder": {"backend": "fake", "memory": "50MB", "device": "cpu"},
        },
    }


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    with running_server(config(), api_key=KEY) as running:
        yield running
