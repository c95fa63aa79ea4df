"""``modelpool serve`` as a user runs it, for the benchmarks that need the server.

``running_server(config, folder)`` starts ``.venv/bin/modelpool serve --config CONFIG``
on a free loopback port (in a session of its own, so that a Ctrl-C reaches the benchmark
only), waits until ``/readyz`` answers, yields its URL and always stops it: SIGTERM and a
wait, then SIGKILL for it and anything it started that is still there.
``pool_figures(url)`` reads its strategy, loads and evictions while it runs.
``free_port``, ``wait_ready`` and ``stop`` serve a benchmark that starts it its own way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

MODELPOOL = Path(sys.executable).parent / "modelpool"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


@contextlib.contextmanager
def running_server(config: Path, folder: Path) -> Iterator[str]:
    """The server of ``config``, logging to ``folder/server.log``; its base URL."""
    port = free_port()
    log_path = folder / "server.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELPOOL_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(MODELPOOL), "serve", "--config", str(config), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"},
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_path)
        yield url
    finally:
        stop(process)


def free_port() -> int:
    """A port free now (released at once: the server binds it, as in the tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"modelpool serve exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)  # the process gives no other readiness signal
    raise RuntimeError(f"modelpool serve not ready in {START_TIMEOUT:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait (killed if it will not stop), then kill what it had started and
    left alive, with a warning: none should be left, as the pool stops its servers."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    left = 0
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                child.kill()
                left += 1
    if left:
        print(f"warning: killed {left} process(es) the server left behind", file=sys.stderr)


def pool_figures(url: str) -> dict[str, Any]:
    """Strategy, and loads and evictions counted by the server, per model and in all."""
    strategy = httpx.get(f"{url}/admin/status", timeout=10).json()["strategy"]
    text = httpx.get(f"{url}/metrics", timeout=10).text
    loads: dict[str, float] = {}
    evictions: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model = sample.labels.get("model", "")
            if sample.name == "modelpool_model_loads_total":
                loads[model] = loads.get(model, 0) + sample.value
            elif (
                sample.name == "modelpool_model_unloads_total"
                and sample.labels.get("reason") == "evicted"
            ):
                evictions[model] = evictions.get(model, 0) + sample.value
    return {
        "strategy": strategy,
        "loads": int(sum(loads.values())),
        "evictions": int(sum(evictions.values())),
        "loads_by_model": {m: int(v) for m, v in sorted(loads.items())},
        "evictions_by_model": {m: int(v) for m, v in sorted(evictions.items())},
    }
