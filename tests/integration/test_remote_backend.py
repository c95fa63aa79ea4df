"""The remote backend against a real server on 127.0.0.1 (``servers/tiny_server.py``)
that wants a key: attaching checks its health with the key, the key never shows, and
the health watch says when the server is gone."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelpool.backends.remote import RemoteBackend
from modelpool.config import ModelSpec

TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")
KEY = "sk-test-0a1b2c3d4e5f6a7b"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    command = [sys.executable, TINY, "--port", str(port), "--api-key", KEY]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as running:
        assert running.stdout is not None
        assert running.stdout.readline().startswith(b"listening")
        yield port, running
        running.kill()


def remote(port: int, **options: object) -> ModelSpec:
    options = {"url": f"http://127.0.0.1:{port}/v1", "api_key": "${TINY_KEY}", **options}
    return ModelSpec(id="far", backend="remote", options=options)


async def test_attaching_checks_health_with_the_key_and_hides_it(
    server: tuple[int, subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINY_KEY", KEY)
    backend = RemoteBackend()
    handle = await backend.load(remote(server[0], model="far-model"), "cpu")
    assert handle.endpoint == f"http://127.0.0.1:{server[0]}/v1"
    assert handle.upstream is not None
    assert handle.upstream.headers == {"Authorization": f"Bearer {KEY}"}
    assert handle.upstream.model == "far-model"
    assert handle.upstream.read_timeout == 300.0
    assert KEY not in repr(handle)
    await backend.unload(handle)
    assert server[1].poll() is None  # not ours to stop


async def test_a_wrong_or_missing_key_says_so_without_showing_it(
    server: tuple[int, subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = RemoteBackend()
    monkeypatch.delenv("TINY_KEY", raising=False)
    with pytest.raises(RuntimeError, match=r"\$\{TINY_KEY\}, which is not set"):
        await backend.load(remote(server[0]), "cpu")
    monkeypatch.setenv("TINY_KEY", "sk-wrong-key-123456")
    with pytest.raises(RuntimeError) as refused:
        await backend.load(remote(server[0]), "cpu")
    assert "answered 401 (check api_key)" in str(refused.value)
    assert "sk-wrong-key-123456" not in str(refused.value)  # the server echoed it
    assert "<api_key>" in str(refused.value)


async def test_the_health_watch_returns_once_the_server_is_gone(
    server: tuple[int, subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINY_KEY", KEY)
    backend = RemoteBackend()
    spec = remote(server[0], health_interval=0.05, unhealthy_after=2)
    handle = await backend.load(spec, "cpu")
    watch = asyncio.ensure_future(backend.wait_closed(handle))
    server[1].kill()
    server[1].wait()
    reason = await asyncio.wait_for(watch, 10)
    assert "failed 2 health checks in a row" in reason
    assert "was refused" in reason
