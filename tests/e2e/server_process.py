"""``modelpool`` run as a user runs it; ``modelpool serve`` on a free loopback port.

``running_server(config)`` writes the config to a temp file, starts the server, waits
until ``/readyz`` answers (polling a socket: the process gives no other signal), yields
a ``Server`` and stops it with SIGINT, checking that it exits and leaves no process
behind.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

START_TIMEOUT = 60.0
STOP_TIMEOUT = 45.0


def modelpool_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """``python -m modelpool ARGS``, with none of the caller's ``MODELPOOL_*`` settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELPOOL_")}
    return subprocess.run(
        [sys.executable, "-m", "modelpool", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=environ | dict(env or {}),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    """``http://127.0.0.1:PORT`` (``https`` with TLS; no trailing slash)."""
    process: subprocess.Popen[str]
    log_path: Path

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


@contextlib.contextmanager
def running_server(
    config: Mapping[str, Any] | None,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    api_key: str | None = None,
    ca_cert: str | None = None,
) -> Iterator[Server]:
    """A server on a free port; ``config=None`` runs the embedded default models.

    ``api_key`` is the key to send while waiting for readiness, when keys are set.
    ``ca_cert``: the server speaks HTTPS (``server.tls`` in ``config``) with a
    certificate this CA signed: ``Server.url`` is ``https://``.
    """
    with tempfile.TemporaryDirectory(prefix="modelpool-serve-") as folder:
        command = [sys.executable, "-m", "modelpool", "serve", "--port", str(port := free_port())]
        if config is not None:
            path = Path(folder) / "modelpool.yaml"
            state = {"state_dir": str(Path(folder) / "state")}
            data = {**config, "pool": {**state, **config.get("pool", {})}}
            path.write_text(yaml.safe_dump(data))
            command += ["--config", str(path)]
        log_path = Path(folder) / "server.log"
        # The embedded default keeps state under ~ unless told: each run gets its own.
        state_dir = (
            {"MODELPOOL_POOL__STATE_DIR": str(Path(folder) / "state")} if config is None else {}
        )
        environ = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            **state_dir,
            **(env or {}),
        }
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [*command, *args], stdout=log, stderr=subprocess.STDOUT, env=environ, text=True
            )
        scheme = "https" if ca_cert else "http"
        server = Server(f"{scheme}://127.0.0.1:{port}", process, log_path)
        try:
            _wait_ready(server, api_key, ca_cert)
            yield server
        finally:
            leftovers = server.descendants()
            stop(server)
            alive = [p for p in leftovers if p.is_running() and p.status() != "zombie"]
            assert not alive, f"processes left behind: {alive}\n{server.log()}"


def stop(server: Server, sig: int = signal.SIGINT) -> int:
    """Signal the server and wait for it to exit; its exit code."""
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
            raise AssertionError(f"server did not stop on {sig!r}\n{server.log()}") from None
    return server.process.returncode


def _wait_ready(server: Server, api_key: str | None, ca_cert: str | None = None) -> None:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    verify = ssl.create_default_context(cafile=ca_cert) if ca_cert else True
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}\n{server.log()}")
        with contextlib.suppress(httpx.TransportError):
            ready = httpx.get(f"{server.url}/readyz", headers=headers, timeout=1, verify=verify)
            if ready.status_code == 200:
                return
        time.sleep(0.05)  # polling a process that gives no other readiness signal
    raise AssertionError(f"server not ready after {START_TIMEOUT}s\n{server.log()}")


def on_a_terminal(args: list[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    """``modelpool ARGS`` with its stdout on a pseudo-terminal: exit code, what the
    terminal showed, stderr."""
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELPOOL_")}
    environ |= {**env, "COLUMNS": "160", "TERM": "xterm"}
    command = [sys.executable, "-m", "modelpool", *args]
    with subprocess.Popen(command, stdout=follower, stderr=subprocess.PIPE, env=environ) as run:
        os.close(follower)
        shown = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not chunk:
                    break
                shown += chunk
            elif run.poll() is not None:
                break
        os.close(leader)
        assert run.stderr is not None
        errors = run.stderr.read().decode()
        return run.wait(10), shown.decode(errors="replace"), errors
