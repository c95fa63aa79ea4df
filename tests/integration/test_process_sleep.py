"""The process backend's warm tier: a server that sleeps on eviction and wakes on request.

Real tiny servers on 127.0.0.1 (``servers/tiny_server.py``), taught vLLM's sleep mode
endpoints: ``POST /sleep?level=1`` and ``POST /wake_up``. The pool's device holds one
model; host RAM (``warm_budget``) holds one sleeper.
"""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.error

import pytest
from process_checks import gone, wait_gone
from test_process_backend import GB, chat, native, next_event, server

from modelpool import Config, ConfigError, EventKind, LoadFailed, ModelPool, ModelSpec, ModelState
from modelpool.backends.process import ProcessBackend, ProcessOptions
from modelpool.core.ports import HOST
from modelpool.plugins import PLUGINS

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")

SLEEP = {"method": "POST", "path": "/sleep?level=1"}
WAKE = {"method": "POST", "path": "/wake_up"}
START_SECONDS = "0.5"
"""Each tiny server waits this long before it listens: a cold start is visibly slow."""


def sleepy(model_id: str, *flags: str) -> ModelSpec:
    return server(model_id, "--start-seconds", START_SECONDS, *flags, sleep=SLEEP, wake=WAKE)


def make_pool(*specs: ModelSpec, warm_budget: int = GB) -> ModelPool:
    # The device holds one model, host RAM one sleeper.
    return ModelPool(
        specs,
        budgets={"cpu": GB},
        warm_budget=warm_budget,
        strategy="lru",
        backends={"process": ProcessBackend()},
    )


async def test_evicting_a_sleepy_model_sleeps_it_and_a_request_wakes_the_same_process() -> None:
    # Host RAM for two: a's copy counts until its wake is done, while b goes to sleep.
    pool = make_pool(sleepy("a"), sleepy("b"), warm_budget=2 * GB)
    async with pool:
        events = pool.events()
        async with pool.use("a") as lease:
            a = native(lease)
            assert await chat(lease.endpoint, "one") == "a: one"
        cold = await next_event(events, EventKind.LOADED, "a")
        async with pool.use("b") as lease:
            assert await chat(lease.endpoint, "two") == "b: two"
            # a was evicted to make room: asleep, not stopped.
            assert pool.state("a") is ModelState.WARM
            assert not gone(a.pid)
            assert pool.get_resource_status()["warm_memory"]["committed"] == GB
            with pytest.raises(urllib.error.HTTPError) as asleep:
                await chat(f"http://127.0.0.1:{a.port}/v1", "are you there?")
            asleep.value.close()  # its socket
            assert asleep.value.code == 503
        async with pool.use("a") as lease:
            assert native(lease) is a  # the same server process, woken
            assert lease.handle.pids == (a.pid,)
            assert await chat(lease.endpoint, "three") == "a: three"
        woken = await next_event(events, EventKind.LOADED, "a")
        assert woken.detail["restored"] is True
        assert cold.detail["seconds"] > float(START_SECONDS)
        assert woken.detail["seconds"] < float(START_SECONDS)
        assert pool.state("b") is ModelState.WARM  # b went to sleep in turn
        log = "\n".join(pool.log_tail("a", 50))
        assert "a: asleep" in log
        assert "a: awake" in log


async def test_a_failed_wake_fails_the_model_with_the_servers_answer_and_stops_it() -> None:
    pool = make_pool(sleepy("a", "--fail-wake"), sleepy("b"))
    async with pool:
        async with pool.use("a") as lease:
            a = native(lease)
        await pool.load("b")
        assert pool.state("a") is ModelState.WARM
        with pytest.raises(LoadFailed) as failed:
            async with pool.use("a"):
                pass
        message = str(failed.value)
        assert "wake: POST" in message
        assert "/wake_up answered 500" in message
        assert "a: cannot wake: CUDA OOM" in message
        assert pool.state("a") is ModelState.FAILED
        assert await wait_gone(a.pid)
        assert pool.get_resource_status()["warm_memory"]["committed"] == 0


async def test_a_failed_sleep_stops_the_model_the_ordinary_way() -> None:
    pool = make_pool(sleepy("a", "--fail-sleep"), sleepy("b"))
    async with pool:
        events = pool.events()
        async with pool.use("a") as lease:
            a = native(lease)
        await pool.load("b")
        failed = await next_event(events, EventKind.OFFLOAD_FAILED, "a")
        assert "/sleep?level=1 answered 500" in failed.detail["error"]
        assert "a: cannot sleep" in failed.detail["error"]
        assert pool.state("a") is ModelState.UNLOADED
        assert gone(a.pid)
        assert pool.get_resource_status()["warm_memory"]["committed"] == 0


async def test_a_sleeper_the_policy_drops_for_room_in_host_ram_is_stopped() -> None:
    pool = make_pool(sleepy("a"), sleepy("b"), sleepy("c"))
    async with pool:
        async with pool.use("a") as lease:
            a = native(lease)
        async with pool.use("b") as lease:
            b = native(lease)
        assert pool.state("a") is ModelState.WARM
        await pool.load("c")  # b goes to sleep; host RAM holds one: lru drops a
        assert pool.state("b") is ModelState.WARM
        assert pool.state("a") is ModelState.UNLOADED
        assert await wait_gone(a.pid)
        assert not gone(b.pid)
    assert await wait_gone(b.pid)  # stop() ends the sleepers too


async def test_a_sleeper_that_dies_is_dropped_and_its_host_bytes_freed() -> None:
    pool = make_pool(sleepy("a"), sleepy("b"))
    async with pool:
        events = pool.events()
        async with pool.use("a") as lease:
            a = native(lease)
        await pool.load("b")
        assert pool.state("a") is ModelState.WARM
        os.kill(a.pid, signal.SIGKILL)
        lost = await asyncio.wait_for(next_event(events, EventKind.LOST, "a"), 10)
        assert lost.detail["device"] == HOST
        assert "killed by SIGKILL" in lost.detail["reason"]
        assert pool.state("a") is ModelState.UNLOADED
        assert pool.get_resource_status()["warm_memory"]["committed"] == 0
        async with pool.use("a") as lease:  # a cold start again, a new process
            assert native(lease).pid != a.pid
            assert await chat(lease.endpoint, "back") == "a: back"


async def test_a_model_without_sleep_and_wake_is_stopped_on_eviction() -> None:
    pool = make_pool(server("plain"), sleepy("b"))
    async with pool:
        async with pool.use("plain") as lease:
            plain = native(lease)
        await pool.load("b")
        assert pool.state("plain") is ModelState.UNLOADED
        assert gone(plain.pid)
        assert pool.get_resource_status()["warm_memory"]["committed"] == 0


def test_sleep_without_wake_is_a_config_problem_naming_the_keys() -> None:
    with pytest.raises(ValueError, match="sleep is set but wake is not"):
        ProcessOptions.model_validate({"command": ["srv"], "sleep": SLEEP})
    with pytest.raises(ValueError, match="wake is set but sleep is not"):
        ProcessOptions.model_validate({"command": ["srv"], "wake": WAKE})
    with pytest.raises(ValueError, match=r"sleep\.path"):
        ProcessOptions.model_validate(
            {"command": ["srv"], "sleep": {"path": "sleep"}, "wake": WAKE}
        )
    options = ProcessOptions.model_validate({"command": ["srv"], "sleep": SLEEP, "wake": WAKE})
    assert options.sleep is not None
    assert options.sleep.path == "/sleep?level=1"
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(
            "models:\n"
            "  m: {backend: process, memory: 1GB, command: [srv],\n"
            '      sleep: {method: POST, path: "/sleep?level=1"}}\n',
            plugins=PLUGINS,
        )
    assert "models.m" in str(error.value)
    assert "sleep is set but wake is not" in str(error.value)


def test_only_models_that_declare_sleep_and_wake_can_offload() -> None:
    backend = ProcessBackend()
    assert backend.can_offload(sleepy("a"))
    assert not backend.can_offload(server("b"))
