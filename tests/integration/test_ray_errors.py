"""When no pool replica can take a request, the Ray ingress answers: never a 500, never
a hang.

One local Ray (``ray.init(num_cpus=2)``, token auth off, its files under a
``RAY_TMPDIR`` of this module's own) and two applications:

* ``modelpool`` (at ``/``): two pool replicas that take one request each
  (``max_ongoing_requests: 1``) over real model servers (``tiny_server.py``), and a
  ``queue_timeout`` of 2 s: with both replicas busy, a third request gets a 503 with
  Retry-After once that time is up;
* ``down`` (at ``/down``): the same, but its replicas ask for a resource no node has,
  so none ever starts: a request gets the same 503.

A model no replica has is a 404 in the server's own shape, answered by the ingress.
Skipped without the ``ray`` extra.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import yaml

ray = pytest.importorskip("ray")

with warnings.catch_warnings():
    # Ray 2.60's own models use pydantic 1 style fields: a deprecation warning at import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ray import serve

import ray_helpers  # noqa: E402

from modelpool.ray.deployment import APP_NAME, build_app, deploy  # noqa: E402
from modelpool.ray.replica import ConfigText  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")
TAG = f"ray-errors-{os.getpid()}"
"""On every model server's command line here: which processes are ours."""
WAIT = 30.0
QUEUE_TIMEOUT = 2.0
BUSY_SECONDS = 8.0
"""How long each request that keeps a replica busy takes: well past the timeout."""
DOWN = "down"


wait_until = functools.partial(ray_helpers.wait_until, seconds=WAIT)


def tiny() -> dict[str, Any]:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}", "--tag", TAG]
    return {"backend": "process", "command": command, "memory": "50MB", "device": "cpu"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config(folder: Path, port: int, **cluster: Any) -> Path:
    text = {
        "pool": {"budgets": {"cpu": "1GB"}, "probe": "static", "state_dir": str(folder)},
        "cluster": {
            "replicas": 2,
            "num_cpus": 0.5,
            "max_ongoing_requests": 1,
            "queue_timeout": f"{QUEUE_TIMEOUT}s",
            "stats_period": "0.2s",
            "http_port": port,
            **cluster,
        },
        "models": {"slow-a": tiny(), "slow-b": tiny(), "echo": tiny()},
    }
    path = folder / "modelpool.yaml"
    path.write_text(yaml.safe_dump(text))
    return path


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of both applications (``/`` and ``/down``)."""
    port = free_port()
    up = config(tmp_path_factory.mktemp("up"), port)
    down = config(tmp_path_factory.mktemp("down"), port, resources={"no-such-node": 1})
    ray_tmp = tempfile.mkdtemp(prefix="rme-", dir="/tmp")  # short: Unix socket paths
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.setenv("RAY_TMPDIR", ray_tmp)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            deploy(ConfigText.of_file(up))
            # Its replicas never start: not waited for (``serve.run`` would wait forever).
            target = serve.RunTarget(build_app(ConfigText.of_file(down)), DOWN, f"/{DOWN}")
            serve.run_many([target], wait_for_applications_running=False)
            yield f"http://127.0.0.1:{port}"
        finally:
            serve.delete(DOWN)
            serve.delete(APP_NAME)  # each replica stops its pool: its model servers end
            serve.shutdown()
            ray.shutdown()
    shutil.rmtree(ray_tmp, ignore_errors=True)
    left = [p for p in psutil.process_iter(["cmdline"]) if TAG in (p.info["cmdline"] or [])]
    for process in left:
        process.kill()
    assert left == [], "model servers outlived the deployment"


def chat(url: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=WAIT)


def replicas_holding(base: str, *models: str) -> bool:
    answer = httpx.get(f"{base}/admin/status", timeout=WAIT)
    if answer.status_code != 200:
        return False
    loaded = {m for r in answer.json()["replicas"] for m in r["loaded_models"]}
    return loaded >= set(models)


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    error = answer.json()["error"]
    assert error["code"] == "replica_unavailable"
    assert error["type"] == "server_error"
    assert "retry" in error["message"]


def test_a_model_no_replica_has_is_a_404_in_the_servers_shape(ingress: str) -> None:
    with (
        openai.OpenAI(base_url=f"{ingress}/v1", api_key="x", max_retries=0, timeout=WAIT) as c,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        c.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message
    # Nowhere up at all: still a 404, from the ingress alone.
    assert chat(f"{ingress}/{DOWN}", "no-such-model").status_code == 404


def test_every_replica_busy_is_a_503_with_retry_after_not_a_hang(ingress: str) -> None:
    answers: dict[str, httpx.Response] = {}

    def busy(model: str) -> None:
        answers[model] = chat(ingress, model, tiny_delay=BUSY_SECONDS)

    workers = [threading.Thread(target=busy, args=(m,)) for m in ("slow-a", "slow-b")]
    for worker in workers:
        worker.start()
    try:
        # Each replica takes one request: READY there means it is serving it now.
        wait_until(lambda: replicas_holding(ingress, "slow-a", "slow-b"), "both replicas busy")
        assert answers == {}, "the requests keeping the replicas busy ended too soon"
        started = time.monotonic()
        answer = chat(ingress, "echo")
        waited = time.monotonic() - started
        assert_unavailable(answer)
        assert QUEUE_TIMEOUT <= waited < BUSY_SECONDS  # the timeout, not a slot freeing
    finally:
        for worker in workers:
            worker.join(WAIT)
    assert [answers[m].status_code for m in ("slow-a", "slow-b")] == [200, 200]
    # Once a replica is free again, the same request is served.
    assert chat(ingress, "echo").json()["choices"][0]["message"]["content"] == "echo: hi"


def test_no_replica_up_is_a_503_with_retry_after_not_a_hang(ingress: str) -> None:
    started = time.monotonic()
    answer = chat(f"{ingress}/{DOWN}", "echo")
    assert_unavailable(answer)
    assert time.monotonic() - started < WAIT
