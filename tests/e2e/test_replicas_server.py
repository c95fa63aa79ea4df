"""Two replicas of a real process model behind a real ``modelpool serve``.

Each copy is a ``tiny_server.py`` process started with ``--name ${MODEL_ID}``, so every
answer says which copy wrote it (``tiny#1: ...`` or ``tiny#2: ...``). The official
``openai`` client sends 40 concurrent streamed requests: both copies serve and none
fails; then one copy's process is killed mid-run and only the requests it was serving
fail, while the others and every later request succeed. A model with
``max_concurrent: 1`` and ``max_queue: 1`` answers a third concurrent request with 429.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from server_process import Server, modelpool_cli, running_server

from modelpool.client import ServerClient

TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
COMMAND = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}"]
CHUNKS = 4
CHUNK_SECONDS = 0.5
CONFIG: dict[str, Any] = {
    "pool": {"strategy": "lru", "budgets": {"cpu": "8GB"}, "restart_backoff": "0.5s"},
    "models": {
        "tiny": {
            "backend": "process",
            "memory": "1GB",
            "device": "cpu",
            "command": COMMAND,
            "replicas": 2,
        },
        "narrow": {
            "backend": "process",
            "memory": "1GB",
            "device": "cpu",
            "command": COMMAND,
            "max_concurrent": 1,
            "max_queue": 1,
        },
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(CONFIG) as server:
        with ServerClient(server.url) as client:
            client.load("tiny")
            until_ready(client, "tiny#2")  # the second copy follows the first (min 2)
        yield server


def until_ready(client: ServerClient, copy: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    model = copy.partition("#")[0]
    while time.monotonic() < deadline:
        copies = {c["id"]: c["status"] for c in client.model(model)["replicas"]}
        if copies.get(copy) == "ready":
            return
        time.sleep(0.1)
    raise AssertionError(f"{copy} not ready after {timeout}s: {client.model(model)}")


def copy_processes(server: Server, copy: str) -> list[psutil.Process]:
    found = []
    for process in server.descendants():
        try:
            if copy in process.cmdline():
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


async def streamed(
    client: openai.AsyncOpenAI, number: int, first_chunk: asyncio.Event | None = None
) -> tuple[str, int]:
    """One streamed request: the copy that answered it, and how many chunks came."""
    stream = await client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": f"request {number}"}],
        stream=True,
        extra_body={"tiny_chunks": CHUNKS, "tiny_chunk_seconds": CHUNK_SECONDS},
    )
    copy, chunks = "?", 0
    async for chunk in stream:
        text = chunk.choices[0].delta.content or "" if chunk.choices else ""
        if text:
            copy = text.partition(":")[0]
            chunks += 1
            if first_chunk is not None:
                first_chunk.set()
    return copy, chunks


def test_forty_concurrent_requests_are_spread_over_both_copies(server: Server) -> None:
    async def run() -> list[tuple[str, int]]:
        client = openai.AsyncOpenAI(base_url=server.v1, api_key="none", max_retries=0)
        async with client:
            return await asyncio.gather(*(streamed(client, n) for n in range(40)))

    answers = asyncio.run(run())
    assert all(chunks == CHUNKS for _, chunks in answers), answers  # none failed
    served = Counter(copy for copy, _ in answers)
    assert set(served) == {"tiny#1", "tiny#2"}, served
    assert min(served.values()) >= 15, served  # fewest in flight: close to even

    with ServerClient(server.url) as client:
        view = client.model("tiny")
    assert view["requests"] >= 40
    assert {c["id"]: c["requests"] > 0 for c in view["replicas"]} == {
        "tiny#1": True,
        "tiny#2": True,
    }


def test_killing_one_copy_fails_only_its_requests_and_it_comes_back(server: Server) -> None:
    (victim,) = copy_processes(server, "tiny#2")

    async def one(client: openai.AsyncOpenAI, number: int, started: asyncio.Event) -> Any:
        try:
            return await streamed(client, number, started)
        except openai.APIError as error:
            return error

    async def run() -> tuple[list[Any], list[Any]]:
        client = openai.AsyncOpenAI(base_url=server.v1, api_key="none", max_retries=0)
        async with client:
            events = [asyncio.Event() for _ in range(20)]
            tasks = [asyncio.create_task(one(client, n, events[n])) for n in range(20)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 30)
            os.kill(victim.pid, signal.SIGKILL)  # mid-run: every request has its first chunk
            during = await asyncio.gather(*tasks)
            after = await asyncio.gather(
                *(one(client, 100 + n, asyncio.Event()) for n in range(10))
            )
            return during, after

    during, after = asyncio.run(run())
    finished = [a for a in during if isinstance(a, tuple) and a[1] == CHUNKS]
    broken = [a for a in during if a not in finished]
    assert finished, during
    assert {copy for copy, _ in finished} == {"tiny#1"}, during  # the living copy's all finish
    assert broken, during  # the dead copy's did not
    for answer in broken:  # cut short: an error, or a stream that ended early on tiny#2
        assert isinstance(answer, openai.APIError) or answer[0] == "tiny#2", answer
    assert len(finished) + len(broken) == 20
    assert all(isinstance(a, tuple) and a[1] == CHUNKS for a in after), after  # none failed

    with ServerClient(server.url) as client:
        until_ready(client, "tiny#2")  # replaced: min 2
    assert copy_processes(server, "tiny#2")[0].pid != victim.pid


def test_models_and_status_show_each_copy(server: Server) -> None:
    result = modelpool_cli("models", "--url", server.url)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    names = [cells[0] for cells in rows if cells]
    assert {"tiny", "tiny#1", "tiny#2", "narrow"} <= set(names), result.stdout
    with ServerClient(server.url) as client:
        status = client.status()
    view = status["model_resources"]["tiny"]
    assert [c["id"] for c in view["replicas"]] == ["tiny#1", "tiny#2"]
    assert "tiny#1" not in status["model_resources"]
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'modelpool_replica_state{model="tiny",replica="2",state="ready"} 1.0' in metrics


def test_over_max_concurrent_and_max_queue_the_answer_is_429(server: Server) -> None:
    with ServerClient(server.url) as client:
        client.load("narrow")
    body = {
        "model": "narrow",
        "messages": [{"role": "user", "content": "slow"}],
        "stream": True,
        "tiny_chunks": 4,
        "tiny_chunk_seconds": 0.5,
    }

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.v1, timeout=30) as http:

            async def one(delay: float) -> httpx.Response:
                await asyncio.sleep(delay)  # most likely in order: serving, waiting, refused
                response = await http.post("/chat/completions", json=body)
                return response

            return await asyncio.gather(one(0), one(0.3), one(0.6))

    answers = asyncio.run(run())
    # One serves, one waits for its slot, one is refused (whichever reached the pool last).
    assert sorted(a.status_code for a in answers) == [200, 200, 429], [a.text for a in answers]
    (refused,) = [a for a in answers if a.status_code == 429]
    assert refused.json()["error"]["code"] == "model_queue_full"
    assert int(refused.headers["Retry-After"]) >= 1
