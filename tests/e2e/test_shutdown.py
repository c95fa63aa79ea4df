"""Stopping ``modelpool serve`` while a model server is still starting."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

import httpx
import psutil
from server_process import running_server

from modelpool.http.app import LEASE_GRACE_SECONDS

SLACK = 3.0  # seconds for the server's own start of shutdown and the OS, on a busy machine


def wait_for_children(
    descendants: Callable[[], list[psutil.Process]], timeout: float = 20
) -> list[psutil.Process]:
    """The model's server process, once the load has started it."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not (children := descendants()):
        assert time.monotonic() < deadline, "the model's server was never started"
        pause.wait(0.05)
    return children


def test_sigint_during_a_load_stops_the_half_started_server_within_the_graces() -> None:
    never_ready = [sys.executable, "-c", "import time; time.sleep(600)"]
    config = {
        "server": {"drain_timeout": 1},
        "pool": {"budgets": {"cpu": "1GB"}, "probe": "system"},
        "models": {
            "stuck": {
                "backend": "process",
                "command": never_ready,
                "memory": "10MB",
                "device": "cpu",
                "ready_timeout": 600,
                "stop_grace": 1,
            }
        },
    }
    with running_server(config) as running:
        started = httpx.post(f"{running.url}/admin/models/stuck/load?wait=false", timeout=30)
        assert started.status_code == 202
        children = wait_for_children(running.descendants)
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGINT)
        running.process.wait(60)  # only so that a hang fails here, not at the timeout
        took = time.monotonic() - signalled
        # Not the ten minutes of its ready_timeout: the drain (1 s, no request is open),
        # the lease grace a load in flight gets before it is aborted, and its stop_grace.
        assert took < 1 + LEASE_GRACE_SECONDS + 1 + SLACK, f"stopped in {took:.1f}s"
        log = running.log()
        assert "Application shutdown complete" in log
        psutil.wait_procs(children, timeout=10)
        assert not [p for p in children if p.is_running() and p.status() != "zombie"]
