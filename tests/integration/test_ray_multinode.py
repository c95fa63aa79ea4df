"""modelpool on a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``).

Two Ray nodes, each with one CPU and one ``pool_slot`` (a custom resource): the pool
deployment's two replicas ask for a slot each, so one lands on each node. Real model
server processes (``tiny_server.py``) behind each pool, our router in front, the
official ``openai`` client through Ray Serve's HTTP proxy (on the head node only: two
nodes on one host cannot both listen on its port). Ray's files go to a temp folder of
this module's own (``RAY_TMPDIR``), its ports are picked free: another Ray on this
machine is left alone. Skipped without the ``ray`` extra.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import sys
import tempfile
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
    from ray.cluster_utils import Cluster

import ray_helpers  # noqa: E402

from modelpool.ray.deployment import APP_NAME, deploy  # noqa: E402
from modelpool.ray.replica import ConfigText  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")
TAG = f"ray-multinode-{os.getpid()}"
"""On every model server's command line here: which processes are ours."""
WAIT = 60.0
"""Seconds any wait here gives up after (two nodes share two cores)."""
SLOT = "pool_slot"


status = ray_helpers.replica_status
wait_until = functools.partial(ray_helpers.wait_until, seconds=WAIT)
model_servers = functools.partial(ray_helpers.model_servers, TAG)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tiny(memory: str) -> dict[str, Any]:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}", "--tag", TAG]
    return {"backend": "process", "command": command, "memory": memory, "device": "cpu"}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, set[str]]]:
    """The ingress's base URL and the two Ray nodes' ids."""
    folder = tmp_path_factory.mktemp("ray-multinode")
    port = free_port()
    config = {
        "pool": {
            "budgets": {"cpu": "1GB"},
            "probe": "static",
            "state_dir": str(folder / "state"),
            "strategy": "lru",
        },
        "cluster": {
            "replicas": 2,
            "num_cpus": 0.5,
            "resources": {SLOT: 1},  # one slot per node: one replica per node
            "stats_period": "0.2s",
            "http_port": port,
        },
        # A big model per replica: the second cannot join the first, so both nodes serve.
        "models": {
            "big-1": tiny("700MB"),
            "big-2": tiny("700MB"),
            "small": tiny("50MB") | {"versions": {"v2": {"notes": "the same, again"}}},
        },
    }
    path = folder / "modelpool.yaml"
    path.write_text(yaml.safe_dump(config))
    # Unix socket paths are short: Ray's folder right under /tmp, not pytest's.
    ray_tmp = tempfile.mkdtemp(prefix="rmn-", dir="/tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.setenv("RAY_TMPDIR", ray_tmp)
        head_args = {
            "num_cpus": 1,
            "resources": {SLOT: 1},
            "gcs_server_port": free_port(),
            "include_dashboard": False,
            "dashboard_agent_listen_port": free_port(),
        }
        cluster = Cluster(initialize_head=True, head_node_args=head_args)
        try:
            worker = cluster.add_node(num_cpus=1, resources={SLOT: 1})
            ray.init(address=cluster.address, log_to_driver=False)
            nodes = {cluster.head_node.node_id, worker.node_id}
            deploy(ConfigText.of_file(path), proxy_location="HeadOnly")
            yield f"http://127.0.0.1:{port}", nodes
        finally:
            if ray.is_initialized():
                serve.delete(APP_NAME)  # each replica stops its pool: its model servers end
                serve.shutdown()
                ray.shutdown()
            cluster.shutdown()
    shutil.rmtree(ray_tmp, ignore_errors=True)
    ray_helpers.assert_no_model_servers_left(TAG)


def ask(base: str, model: str, text: str = "hi") -> str:
    with openai.OpenAI(
        base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=WAIT
    ) as chat:
        answer = chat.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
    content = answer.choices[0].message.content
    assert content is not None
    return content


def ready_on(base: str, model: str) -> list[str]:
    """The Ray nodes where ``model`` is READY, as the replicas last reported."""
    return [r["ray_node"] for r in status(base) if r["models"][model]["status"] == "ready"]


def test_each_replica_runs_on_its_own_node_and_says_which(
    two_nodes: tuple[str, set[str]],
) -> None:
    base, nodes = two_nodes
    replicas = wait_until(lambda: len(s := status(base)) == 2 and s, "both replicas reporting")
    assert {r["ray_node"] for r in replicas} == nodes


def test_both_nodes_serve_and_each_model_keeps_its_node(two_nodes: tuple[str, set[str]]) -> None:
    base, nodes = two_nodes
    assert ask(base, "big-1", "one") == "big-1: one"
    (home1,) = wait_until(lambda: ready_on(base, "big-1"), "big-1 READY and reported")
    assert ask(base, "big-2", "two") == "big-2: two"  # does not fit beside big-1
    (home2,) = wait_until(lambda: ready_on(base, "big-2"), "big-2 READY and reported")
    assert {home1, home2} == nodes
    for i in range(6):  # affinity: each goes back where it is resident
        assert ask(base, "big-1" if i % 2 else "big-2", str(i)).endswith(f": {i}")
    views = wait_until(
        lambda: (
            (s := status(base))
            and sum(r["models"]["big-1"]["requests"] for r in s) >= 4
            and sum(r["models"]["big-2"]["requests"] for r in s) >= 4
            and s
        ),
        "every request reported",
    )
    by_node = {r["ray_node"]: r["models"] for r in views}
    assert by_node[home1]["big-1"]["requests"] == 4
    assert by_node[home2]["big-2"]["requests"] == 4
    assert sum(m["big-1"]["load_count"] + m["big-2"]["load_count"] for m in by_node.values()) == 2


def test_a_version_is_routed_as_a_model_of_its_own(two_nodes: tuple[str, set[str]]) -> None:
    base, _ = two_nodes
    for i in range(3):
        assert ask(base, "small@v2", str(i)) == f"small@v2: {i}"
    views = wait_until(
        lambda: (
            (s := status(base)) and sum(r["models"]["small@v2"]["requests"] for r in s) >= 3 and s
        ),
        "every request for small@v2 reported",
    )
    (holder,) = [r for r in views if r["models"]["small@v2"]["status"] == "ready"]
    assert holder["models"]["small@v2"]["requests"] == 3  # where it is READY, it stays
    assert sum(r["models"]["small@v2"]["load_count"] for r in views) == 1


def test_admin_routes_act_on_the_replica_named(two_nodes: tuple[str, set[str]]) -> None:
    base, _ = two_nodes
    reports = wait_until(lambda: len(s := status(base)) == 2 and s, "both replicas reporting")
    ids = sorted(r["replica"] for r in reports)
    unnamed = httpx.get(f"{base}/admin/models", timeout=WAIT)
    assert unnamed.status_code == 400
    assert all(i in unnamed.json()["error"]["message"] for i in ids)
    unknown = httpx.get(f"{base}/admin/models", params={"replica": "nope"}, timeout=WAIT)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "replica_not_found"

    chosen, other = ids
    url = f"{base}/admin/models/small/load"
    assert httpx.post(url, params={"replica": chosen}, timeout=WAIT).status_code == 200
    wait_until(
        lambda: {r["replica"] for r in status(base) if "small" in r["loaded_models"]} == {chosen},
        "small READY on the replica named, and only there",
    )
    own = httpx.get(f"{base}/admin/status", params={"replica": chosen}, timeout=WAIT)
    assert own.status_code == 200
    assert own.json()["model_resources"]["small"]["status"] == "ready"
    elsewhere = httpx.get(f"{base}/admin/status", params={"replica": other}, timeout=WAIT)
    assert elsewhere.json()["model_resources"]["small"]["status"] != "ready"
    url = f"{base}/admin/models/small/unload"
    assert httpx.post(url, params={"replica": chosen}, timeout=WAIT).status_code == 200
    wait_until(
        lambda: all("small" not in r["loaded_models"] for r in status(base)),
        "small unloaded again",
    )
