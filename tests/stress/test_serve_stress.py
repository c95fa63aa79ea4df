"""32 clients mix chat, admin load and admin unload over eight real model servers under
a budget for four, through a real ``modelpool serve``, while model servers are killed
under them (``mix.py`` says how). Afterwards the books must equal the resident models,
with no lease, reservation or waiter left, the live processes must be exactly the ready
models' servers, and after the server stops none may be left anywhere.

About a minute on two cores; ``bench/soak.py`` runs the same mix for an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import httpx
import psutil
import pytest
from mix import Mix, config, model_servers, settled_books, tagged
from server_process import running_server

pytestmark = [
    pytest.mark.stress,
    pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups"),
]

TAG = f"stress-{os.getpid()}"
RUN_LIMIT = 150.0
"""The clients stop starting requests after 40 s; one in flight ends within 60 s."""


@pytest.fixture
def nothing_left_behind() -> Iterator[None]:
    """After the test, kill any process of this run still alive, so that a failure
    leaves nothing running (the test itself asserts there is none)."""
    yield
    for process in tagged(TAG):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


@pytest.mark.usefixtures("nothing_left_behind")
async def test_clients_loads_unloads_and_crashes_leave_the_books_equal_to_the_processes() -> None:
    with running_server(config(TAG)) as server:
        serve = server.process.pid
        mix = Mix(server.url, serve, TAG, clients=32, seconds=40, crash_every=4)
        await asyncio.wait_for(mix.run(), RUN_LIMIT)

        print(dict(mix.tally))  # shown with -s, or -rP
        assert mix.problems == [], f"{mix.tally}\n" + "\n".join(mix.problems[:20])
        assert mix.tally["chat 200"] >= 100, mix.tally
        assert mix.tally["load 200"] >= 10, mix.tally
        assert mix.tally["unload 200"] >= 10, mix.tally
        assert mix.tally["crash"] >= 5, mix.tally
        problems = await settled_books(server.url, serve, TAG)
        assert problems == [], "\n".join([*problems, "server log:", server.log()[-2000:]])

        ready = sorted(model_servers(serve, TAG))
        assert 1 <= len(ready) <= 4
        async with httpx.AsyncClient(base_url=server.v1, timeout=30) as client:
            for model in ready:  # the books say resident: it serves, from its own process
                answer = await client.post(
                    "/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": "up?"}]},
                )
                assert answer.json()["choices"][0]["message"]["content"] == f"{model}: up?"
    # running_server checked that no process under the server outlived it; nor may an
    # orphan re-parented elsewhere.
    assert tagged(TAG) == []
