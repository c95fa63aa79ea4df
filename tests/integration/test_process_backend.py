"""The real pool with the process backend, against a tiny real server on 127.0.0.1.

The server (``servers/tiny_server.py``) misbehaves on request; after each case no
process may be left behind and the other models keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from process_checks import gone, wait_gone

from modelpool import Config, ConfigError, EventKind, LoadFailed, ModelPool, ModelSpec, ModelState
from modelpool.backends.logring import LogRing
from modelpool.backends.process import ProcessBackend, ProcessOptions, ServerProcess
from modelpool.core.events import PoolEvent
from modelpool.core.lease import Lease
from modelpool.plugins import PLUGINS

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")

GB = 10**9
TINY = str(Path(__file__).parent / "servers" / "tiny_server.py")
TAG = f"run-{os.getpid()}"
"""On every server's command line, so that parallel test runs tell their servers apart."""


def server(model_id: str, *flags: str, **options: object) -> ModelSpec:
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", "${MODEL_ID}", "--tag", TAG]
    command += flags
    return ModelSpec(
        id=model_id,
        backend="process",
        memory=GB,
        device="cpu",
        options={"command": command, **options},
    )


def make_pool(*specs: ModelSpec, budget: int = 2 * GB) -> tuple[ModelPool, ProcessBackend]:
    backend = ProcessBackend()
    pool = ModelPool(specs, budgets={"cpu": budget}, strategy="lru", backends={"process": backend})
    return pool, backend


def native(lease: Lease) -> ServerProcess:
    process = lease.handle.native
    assert isinstance(process, ServerProcess)
    return process


async def chat(endpoint: str | None, text: str) -> str:
    """POST /v1/chat/completions with urllib, off the loop; the answer's content."""
    assert endpoint is not None
    body = json.dumps({"model": "x", "messages": [{"role": "user", "content": text}]})
    request = urllib.request.Request(
        f"{endpoint}/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )

    def post() -> str:
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.load(response)
        content: str = answer["choices"][0]["message"]["content"]
        return content

    return await asyncio.to_thread(post)


def servers_named(name: str) -> list[int]:
    """Pids of this run's live tiny servers named ``name`` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        mine = TINY.encode() in argv and TAG.encode() in argv and name.encode() in argv
        if mine and not gone(int(entry.name)):
            pids.append(int(entry.name))
    return pids


async def printed_pid(backend: ProcessBackend, lease: Lease, label: str) -> int:
    """The pid the server printed as ``label PID`` (its output may lag its readiness)."""
    deadline = time.monotonic() + 5
    while True:
        for line in backend.log_tail(lease.handle):
            if line.startswith(f"{label} "):
                return int(line.split()[1])
        assert time.monotonic() < deadline, backend.log_tail(lease.handle)
        await asyncio.sleep(0.02)


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def next_event(events: AsyncIterator[PoolEvent], kind: EventKind, model: str) -> PoolEvent:
    async for event in events:
        if event.kind is kind and event.model_id == model:
            return event
    raise AssertionError(f"the pool stopped before {kind} for {model}")


async def test_a_model_serves_from_its_endpoint_and_unload_or_stop_ends_its_process() -> None:
    pool, _ = make_pool(server("a"), server("b"))
    async with pool:
        async with pool.use("a") as lease:
            assert await chat(lease.endpoint, "hello") == "a: hello"
            a = native(lease)
            assert lease.endpoint == f"http://127.0.0.1:{a.port}/v1"
        async with pool.use("b") as lease:
            b = native(lease)
        await pool.unload("a")
        assert gone(a.pid)
        assert refuses(a.port)
        assert not gone(b.pid)
    assert gone(b.pid)  # pool.stop() unloaded it
    assert refuses(b.port)


async def test_a_swap_under_a_budget_for_one_stops_the_first_server() -> None:
    pool, _ = make_pool(server("a"), server("b"), budget=GB)
    async with pool:
        async with pool.use("a") as lease:
            a = native(lease)
            assert await chat(lease.endpoint, "one") == "a: one"
        async with pool.use("b") as lease:
            assert gone(a.pid)
            assert refuses(a.port)
            assert await chat(lease.endpoint, "two") == "b: two"
        assert pool.state("a") is ModelState.UNLOADED


async def test_a_server_that_exits_at_start_fails_its_model_with_code_and_output() -> None:
    pool, _ = make_pool(server("good"), server("bad", "--exit-at-start", "7"))
    async with pool:
        async with pool.use("good"):
            pass
        with pytest.raises(LoadFailed) as failure:
            await pool.load("bad")
        message = str(failure.value)
        assert "exited with code 7 during start" in message
        assert "bad: cannot open the weights, exiting with 7" in message
        assert pool.state("bad") is ModelState.FAILED
        assert servers_named("bad") == []
        async with pool.use("good") as lease:
            assert lease.hit
            assert await chat(lease.endpoint, "still here?") == "good: still here?"


async def test_a_server_never_healthy_times_out_and_is_stopped() -> None:
    pool, _ = make_pool(server("sick", "--never-healthy", ready_timeout=1))
    async with pool:
        with pytest.raises(LoadFailed, match=r"not ready after 1s \(ready_timeout\).*503"):
            await pool.load("sick")
        assert pool.state("sick") is ModelState.FAILED
        assert servers_named("sick") == []


async def test_a_server_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    pool, _ = make_pool(server("stubborn", "--ignore-sigterm", stop_grace=0.5))
    async with pool:
        async with pool.use("stubborn") as lease:
            stubborn = native(lease)
        started = time.monotonic()
        await pool.unload("stubborn")
        assert time.monotonic() - started >= 0.5  # SIGTERM did nothing: it waited the grace
        assert stubborn.process.returncode == -signal.SIGKILL
        assert gone(stubborn.pid)


async def test_unload_stops_the_grandchildren_of_a_server_too() -> None:
    pool, backend = make_pool(server("parent", "--fork-grandchild"))
    async with pool:
        async with pool.use("parent") as lease:
            grandchild = await printed_pid(backend, lease, "grandchild")
            parent = native(lease)
        assert not gone(grandchild)
        await pool.unload("parent")
        assert gone(parent.pid)
        assert await wait_gone(grandchild)


# Starts a worker in a process group of its own (still in the server's session), then
# becomes the tiny server: argv[1] is tiny_server.py, the rest its arguments.
WORKER_IN_OWN_GROUP = """
import os, subprocess, sys
sleeper = [sys.executable, "-c", "import time; time.sleep(600)", "own-group-worker", sys.argv[-1]]
worker = subprocess.Popen(sleeper, stdout=subprocess.DEVNULL, process_group=0)
print(f"worker {worker.pid}", flush=True)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


async def test_unload_stops_a_worker_that_left_the_process_group_but_not_the_session() -> None:
    command = [sys.executable, "-c", WORKER_IN_OWN_GROUP, TINY, "--port", "${PORT}", "--tag", TAG]
    spec = ModelSpec(id="mover", backend="process", memory=GB, device="cpu",
                     options={"command": command})  # fmt: skip
    pool, backend = make_pool(spec)
    async with pool:
        async with pool.use("mover") as lease:
            worker = await printed_pid(backend, lease, "worker")
            mover = native(lease)
        try:
            assert os.getpgid(worker) != mover.pgid
            assert os.getsid(worker) == mover.pgid
            await pool.unload("mover")
            assert gone(mover.pid)
            assert await wait_gone(worker)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"command_tail": "--x=${NOPE}"}, r"unknown placeholder \$\{NOPE\} in command"),
        ({"env": {"WEIGHTS": "${MODEL_PATH}"}}, r"env.WEIGHTS uses \$\{MODEL_PATH\}"),
    ],
)
async def test_a_bad_placeholder_is_refused_with_the_config_naming_it(
    extra: dict[str, object], named: str
) -> None:
    # Refused when the config is read (with its key), not when the model is first asked for.
    tail = extra.pop("command_tail", None)
    spec = server("odd", *([str(tail)] if tail else []), **extra)
    data = {"models": {"odd": spec.model_dump(exclude={"id"})}}
    with pytest.raises(ConfigError, match=rf"models\.odd: {named}"):
        Config.from_mapping(data, plugins=PLUGINS)
    # A spec built in code is checked when it loads: the load fails, naming it too.
    pool, _ = make_pool(spec)
    async with pool:
        with pytest.raises(LoadFailed, match=named):
            await pool.load("odd")
    assert servers_named("odd") == []


async def test_a_cancelled_load_leaves_no_process_behind() -> None:
    backend = ProcessBackend()
    spec = server("cancelled", "--never-healthy")
    load = asyncio.create_task(backend.load(spec, "cpu"))
    deadline = time.monotonic() + 5
    while not (pids := servers_named("cancelled")):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    load.cancel()
    with pytest.raises(asyncio.CancelledError):
        await load
    assert all(gone(pid) for pid in pids)


def test_the_log_ring_keeps_the_last_lines_whole() -> None:
    ring = LogRing(3, max_line=8)
    ring.feed(b"one\ntwo\r\nthr")
    assert ring.tail() == ["one", "two", "thr"]  # an unfinished line shows too
    euro = "€".encode()
    ring.feed(b"ee " + euro[:1])  # a character split between two reads
    ring.feed(euro[1:] + b"\n0123456789abc")
    ring.flush()
    assert ring.tail() == ["three €", "01234567", "89abc"]  # cut at max_line, oldest gone
    assert ring.tail(1) == ["89abc"]


def test_process_options_are_checked_with_the_config() -> None:
    good = Config.from_yaml(
        "pool: {budgets: {cpu: 1GB}}\n"
        "models:\n"
        "  m: {backend: process, memory: 1GB, device: cpu, command: [srv, --ctx, 4096],\n"
        "      env: {THREADS: 4}, ready_timeout: 2m}\n"
    )
    options = ProcessOptions.model_validate(good.models["m"].options)
    assert options.command == ["srv", "--ctx", "4096"]  # YAML numbers become arguments
    assert options.env == {"THREADS": "4"}
    assert options.ready_timeout == 120
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(
            "models:\n"
            "  m: {backend: process, memory: 1GB, command: [srv], helth: /ready}\n"
            "  n: {backend: process, memory: 1GB, command: [], health: ready}\n",
            plugins=PLUGINS,
        )
    text = str(error.value)
    assert "models.m.helth" in text
    assert "unknown key for backend 'process'" in text
    assert "models.n.command" in text
    assert "models.n.health" in text


async def test_a_server_that_dies_later_is_lost_and_its_model_failed() -> None:
    pool, _ = make_pool(server("fragile", "--die-after", "0.5"), server("steady"))
    async with pool:
        events = pool.events()
        await pool.load("steady")
        async with pool.use("fragile") as lease:
            fragile = native(lease)
        lost = await asyncio.wait_for(next_event(events, EventKind.LOST, "fragile"), 10)
        assert pool.state("fragile") is ModelState.FAILED
        assert "exited with code 3" in lost.detail["reason"]
        assert "fragile: crashing on purpose" in lost.detail["reason"]
        assert gone(fragile.pid)
        async with pool.use("steady") as lease:
            assert await chat(lease.endpoint, "ok?") == "steady: ok?"
