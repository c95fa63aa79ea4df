"""What the Ray tests share: polling a real deployment with a deadline, and finding the
model server processes a test module started (each carries the module's tag on its
command line, so a test never touches another run's processes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import psutil

T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, seconds: float) -> T:
    """``check()``'s first truthy answer, polled until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)  # a real deployment on other processes: nothing to wait on here
    raise AssertionError(f"not within {seconds} s: {what}")


def model_servers(tag: str, model: str | None = None) -> list[psutil.Process]:
    """The model server processes whose command line has ``tag`` (and ``model``)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if tag in cmdline and (model is None or model in cmdline):
            found.append(process)
    return found


def assert_no_model_servers_left(tag: str) -> None:
    """After a deployment is gone: none of its model servers may outlive it (any found
    is killed, then the test fails)."""
    left = model_servers(tag)
    for process in left:
        process.kill()
    assert left == [], "model servers outlived the deployment"


def replica_status(base: str) -> list[dict[str, Any]]:
    """The ingress's ``/admin/status``: one entry per pool replica."""
    answer = httpx.get(f"{base}/admin/status", timeout=10)
    assert answer.status_code == 200, answer.text
    replicas: list[dict[str, Any]] = answer.json()["replicas"]
    return replicas
