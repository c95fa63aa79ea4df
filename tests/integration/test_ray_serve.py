"""modelpool on a real local Ray Serve: two pool replicas, the OpenAI ingress, our router.

One local Ray (``ray.init(num_cpus=2)``, token auth off) and one deployment serve
every test here: two replicas of the pool, each with a 1 GB CPU budget, over real
model server processes (``tiny_server.py``, which echoes ``<model>: <message>``). The
official ``openai`` client talks to Ray Serve's HTTP proxy. Each test uses models of
its own, cold at its start, and reads where they went from ``/admin/status`` (what
each replica last reported). Skipped without the ``ray`` extra.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

ray = pytest.importorskip("ray")

with warnings.catch_warnings():
    # Ray 2.60's own models use pydantic 1 style fields: a deprecation warning at import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ray import serve

import ray_helpers  # noqa: E402

from modelpool.ray.deployment import APP_NAME, POOL_DEPLOYMENT, deploy  # noqa: E402
from modelpool.ray.replica import ConfigText  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")
SMALL, BIG = "50MB", "700MB"
"""Per replica budget 1 GB: every small model fits beside one big one, two bigs do not."""
BURST = 50
WAIT = 30.0
"""Seconds any wait here gives up after."""


TAG = f"ray-test-{os.getpid()}"
"""On every model server's command line here: which processes are ours."""


status = ray_helpers.replica_status
wait_until = functools.partial(ray_helpers.wait_until, seconds=WAIT)
model_servers = functools.partial(ray_helpers.model_servers, TAG)


def tiny(memory: str, *flags: str) -> dict[str, Any]:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}", *flags]
    command += ["--tag", TAG]
    return {"backend": "process", "command": command, "memory": memory, "device": "cpu"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ingress's base URL, on a deployment shared by the module's tests."""
    folder = tmp_path_factory.mktemp("ray")
    port = free_port()
    config = {
        "pool": {
            "budgets": {"cpu": "1GB"},
            "probe": "static",  # the declared sizes are what is booked
            "state_dir": str(folder / "state"),
            "strategy": "lru",
        },
        "cluster": {
            "replicas": 2,
            "num_cpus": 0.5,
            "stats_period": "0.2s",
            "http_port": port,
        },
        "models": {
            "echo-a": tiny(SMALL),
            "echo-stream": tiny(SMALL),
            "big-1": tiny(BIG),
            "big-2": tiny(BIG),
            "cold": tiny(SMALL, "--start-delay", "1.5"),
            "echo-kill": tiny(SMALL),
            "echo-break": tiny(SMALL),
        },
    }
    path = folder / "modelpool.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")  # a local test cluster: no token
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            deploy(ConfigText.of_file(path))
            yield f"http://127.0.0.1:{port}"
        finally:
            serve.delete(APP_NAME)  # each replica stops its pool: its model servers end
            serve.shutdown()
            ray.shutdown()
    ray_helpers.assert_no_model_servers_left(TAG)


def where(base: str, model: str) -> dict[str, dict[str, Any]]:
    """Each replica's view of ``model``: status, load_count, requests."""
    return {r["replica"]: r["models"][model] for r in status(base)}


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=WAIT)


def ask(base: str, model: str, text: str = "hi") -> str:
    with client(base) as chat:
        answer = chat.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
    content = answer.choices[0].message.content
    assert content is not None
    return content


def test_two_replicas_report_their_pools(ingress: str) -> None:
    replicas = wait_until(lambda: len(status(ingress)) == 2 and status(ingress), "two reports")
    assert len({r["replica"] for r in replicas}) == 2
    for replica in replicas:
        assert replica["memory"]["cpu"]["budget"] == 10**9
        assert set(replica["models"]) == {
            "echo-a",
            "echo-stream",
            "big-1",
            "big-2",
            "cold",
            "echo-kill",
            "echo-break",
        }


def test_chat_through_the_ingress(ingress: str) -> None:
    assert ask(ingress, "echo-a", "hello") == "echo-a: hello"


def test_streaming_through_the_ingress(ingress: str) -> None:
    with client(ingress) as chat:
        stream = chat.chat.completions.create(
            model="echo-stream",
            messages=[{"role": "user", "content": "streamed"}],
            stream=True,
            extra_body={"tiny_chunks": 4},
        )
        chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([c for c in chunks if c]) >= 2
    assert "".join(chunks).startswith("echo-stream")


def test_a_stream_the_model_breaks_off_never_looks_complete(ingress: str) -> None:
    with client(ingress) as chat:
        stream = chat.chat.completions.create(
            model="echo-break",
            messages=[{"role": "user", "content": "cut"}],
            stream=True,
            extra_body={"tiny_chunks": 5, "tiny_die_after": 2},
        )
        with pytest.raises((openai.APIError, httpx.HTTPError)):
            for _ in stream:
                pass


def test_errors_keep_the_server_shape(ingress: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        ask(ingress, "no-such-model")
    assert caught.value.code == "model_not_found"
    json_type = {"content-type": "application/json"}
    url = f"{ingress}/v1/chat/completions"
    answer = httpx.post(url, content=b"{not json", headers=json_type, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_a_resident_model_keeps_its_replica(ingress: str) -> None:
    ask(ingress, "echo-a")
    holder = wait_until(
        lambda: [r for r, m in where(ingress, "echo-a").items() if m["status"] == "ready"],
        "echo-a READY somewhere",
    )
    assert len(holder) == 1
    for _ in range(10):
        ask(ingress, "echo-a")
    views = wait_until(
        lambda: (v := where(ingress, "echo-a"))[holder[0]]["requests"] >= 11 and v,
        "the holder's report counting every request",
    )
    others = [view for replica, view in views.items() if replica != holder[0]]
    assert all(view["requests"] == 0 and view["load_count"] == 0 for view in others)
    assert views[holder[0]]["load_count"] == 1


def test_models_that_do_not_fit_together_go_to_different_replicas(ingress: str) -> None:
    ask(ingress, "big-1")
    wait_until(
        lambda: any(m["status"] == "ready" for m in where(ingress, "big-1").values()),
        "big-1 READY and reported",
    )
    ask(ingress, "big-2")
    big1, big2 = where(ingress, "big-1"), where(ingress, "big-2")
    home1 = [r for r, m in big1.items() if m["status"] == "ready"]
    home2 = wait_until(
        lambda: [r for r, m in where(ingress, "big-2").items() if m["status"] == "ready"],
        "big-2 READY and reported",
    )
    assert home1 != home2
    # Neither was evicted for the other: each loaded once, and both are still there.
    big1 = where(ingress, "big-1")
    assert big1[home1[0]]["status"] == "ready"
    assert sum(m["load_count"] for m in big1.values()) == 1
    assert sum(m["load_count"] for m in big2.values()) <= 1


def test_a_burst_for_a_cold_model_loads_it_once(ingress: str) -> None:
    async def burst() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=f"{ingress}/v1", api_key="unused", max_retries=0, timeout=WAIT
        ) as aclient:

            async def one(i: int) -> str:
                answer = await aclient.chat.completions.create(
                    model="cold", messages=[{"role": "user", "content": f"n{i}"}]
                )
                return answer.choices[0].message.content or ""

            return await asyncio.gather(*(one(i) for i in range(BURST)))

    answers = asyncio.run(burst())
    assert sorted(answers) == sorted(f"cold: n{i}" for i in range(BURST))
    views = wait_until(
        lambda: (
            (v := where(ingress, "cold")) and sum(m["requests"] for m in v.values()) >= BURST and v
        ),
        "every request of the burst reported",
    )
    assert sum(m["load_count"] for m in views.values()) == 1, views


def test_a_killed_replica_is_replaced_and_leaves_no_model_server(ingress: str) -> None:
    ask(ingress, "echo-kill")
    holder = wait_until(
        lambda: [r for r, m in where(ingress, "echo-kill").items() if m["status"] == "ready"],
        "echo-kill READY somewhere",
    )[0]
    (server,) = model_servers("echo-kill")
    actor = ray.get_actor(
        f"SERVE_REPLICA::{APP_NAME}#{POOL_DEPLOYMENT}#{holder}", namespace="serve"
    )
    ray.kill(actor, no_restart=True)  # as a crash would: its pool never stops
    # Serve starts a replacement; on this node it stops what the dead replica left.
    wait_until(
        lambda: len(ids := {r["replica"] for r in status(ingress)}) == 2 and holder not in ids,
        "a replacement replica reporting",
    )
    wait_until(lambda: not server.is_running(), "the dead replica's model server stopped")
    assert ask(ingress, "echo-kill", "again") == "echo-kill: again"


def test_rays_own_tools_build_the_same_application(tmp_path: Path) -> None:
    from modelpool.ray.deployment import app_builder

    path = tmp_path / "modelpool.yaml"
    path.write_text(
        yaml.safe_dump({"models": {"a": tiny(SMALL)}, "pool": {"budgets": {"cpu": "1GB"}}})
    )
    assert isinstance(app_builder({"config": str(path)}), serve.Application)
