"""Rollouts on the real pool with the shipped fake backend, a manual clock and a seed.

The manager runs without its timer (``interval=None``): each test moves the clock and
calls ``tick()`` itself, so every step happens exactly when the test says.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelpool import Config, FakeBackend, ModelPool, ModelSpec, ModelState
from modelpool.backends.fake import FakeRequestError
from modelpool.core.testing import ManualClock
from modelpool.errors import ConfigError, SwitchRefused, UnknownVersion
from modelpool.monitor.health import HealthMonitor, Thresholds
from modelpool.rollout import RolloutManager, Status

GB = 10**9
RUNNING_OR_DONE = (Status.RUNNING, Status.COMPLETED, Status.FAILED)


def chat(**versions: dict[str, Any]) -> ModelSpec:
    return ModelSpec(
        id="chat",
        backend="fake",
        memory=2 * GB,
        device="cpu",
        aliases=("talk",),
        versions={"v2": {"notes": "second", "author": "bo"}, **versions},
    )


class Rig:
    """A pool, its fake backend and a rollout manager on one manual clock."""

    def __init__(
        self, *specs: ModelSpec, budget: int = 8 * GB, state_dir: Path | None = None
    ) -> None:
        self.clock = ManualClock()
        self.backend = FakeBackend()
        self.pool = ModelPool(
            specs or (chat(),),
            budgets={"cpu": budget},
            strategy="lru",
            backends={"fake": self.backend},
            clock=self.clock,
        )
        self.health = HealthMonitor(self.clock, window=60, thresholds=Thresholds(min_requests=20))
        self.rollouts = RolloutManager(
            self.pool,
            health=self.health,
            state_dir=state_dir,
            clock=self.clock,
            wall=lambda: 1_790_000_000.0 + self.clock(),
            rng=random.Random(7),
            interval=None,
        )

    async def __aenter__(self) -> Rig:
        await self.pool.start()
        await self.rollouts.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.rollouts.stop()
        await self.pool.stop()

    async def call(self, model: str = "chat", key: str | None = None) -> tuple[str, bool]:
        """One request through the pool, as an application makes it: (version, ok)."""
        try:
            async with self.pool.use(model, key=key) as lease:
                version = self.pool.spec(lease.model_id).version
                lease.obj("hello")
        except FakeRequestError:
            return version, False
        return version, True

    async def switch(
        self, target: str, strategy: str = "immediate", settings: dict[str, Any] | None = None
    ) -> str:
        """Start moving ``chat`` to ``target``; the operation's id once traffic moves."""
        result = await self.rollouts.switch_model("chat", target, strategy, settings)
        assert result.operation_id is not None, result.errors
        await self.rollouts.wait(result.operation_id, *RUNNING_OR_DONE)
        return result.operation_id

    def share(self, target: str, requests: int = 10_000) -> float:
        picks = Counter(self.rollouts.route("chat", None) for _ in range(requests))
        return picks[f"chat@{target}"] / requests

    async def step(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.rollouts.tick()
        await asyncio.sleep(0)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def set_aside(folder: Path) -> int:
    return len(list(folder.glob("rollouts.json.corrupt-*")))


def rewrite(path: Path, damage: Callable[[bytes], bytes]) -> None:
    path.write_bytes(damage(path.read_bytes()))


def tear(path: Path, keep: int) -> None:
    """Cut a file short, as a write interrupted by a crash leaves it."""
    path.write_bytes(path.read_bytes()[:keep])


# --- the registry ---------------------------------------------------------------------


async def test_config_versions_are_models_of_their_own_and_named_id_at_version() -> None:
    async with Rig() as rig:
        assert rig.pool.versions("chat") == {"v1": "chat", "v2": "chat@v2"}
        listed = {v["version"]: v for v in rig.rollouts.versions("talk")}
        assert listed["v1"]["weight"] == 1.0
        assert listed["v2"]["weight"] == 0.0
        assert (listed["v2"]["author"], listed["v2"]["notes"]) == ("bo", "second")
        assert listed["v2"]["origin"] == "config"
        # With no rollout, all traffic goes to the base version; a pin reaches v2.
        assert {await rig.call() for _ in range(5)} == {("v1", True)}
        assert await rig.call("chat@v2") == ("v2", True)
        assert rig.backend.loads == ["chat", "chat@v2"]


async def test_a_version_registered_at_run_time_serves_and_can_be_unregistered() -> None:
    async with Rig() as rig:
        added = rig.rollouts.register_version(
            "chat", "v3", {"load_seconds": 0.01}, author="ana", notes="faster"
        )
        assert (added["id"], added["origin"], added["author"]) == ("chat@v3", "runtime", "ana")
        assert added["created"].startswith("2026-")
        assert await rig.call("chat@v3") == ("v3", True)
        await rig.rollouts.unregister_version("chat", "v3")
        assert "v3" not in rig.pool.versions("chat")
        assert rig.backend.unloads[-1] == "chat@v3"
        with pytest.raises(UnknownVersion, match="versions: v1, v2"):
            await rig.rollouts.unregister_version("chat", "v3")


async def test_bad_settings_of_a_new_version_name_the_key() -> None:
    async with Rig() as rig:
        with pytest.raises(ConfigError, match=r"versions\.v3\.load_secnds"):
            rig.rollouts.register_version("chat", "v3", {"load_secnds": 1})
        with pytest.raises(SwitchRefused, match="already registered"):
            rig.rollouts.register_version("chat", "v2", {})
        assert rig.pool.versions("chat") == {"v1": "chat", "v2": "chat@v2"}


async def test_versions_that_carry_traffic_or_come_from_the_config_stay() -> None:
    async with Rig() as rig:
        with pytest.raises(SwitchRefused) as refused:
            await rig.rollouts.unregister_version("chat", "v1")
        assert any("config file" in p for p in refused.value.problems)
        assert any("carries traffic" in p for p in refused.value.problems)


# --- immediate ------------------------------------------------------------------------


async def test_immediate_switch_under_load_fails_no_request_and_drains_the_old() -> None:
    async with Rig() as rig:
        held = await rig.pool.acquire("chat")  # an in-flight request on v1
        stop = asyncio.Event()
        outcomes: list[tuple[str, bool]] = []

        async def client() -> None:
            while not stop.is_set():
                outcomes.append(await rig.call())
                await asyncio.sleep(0)

        clients = [asyncio.create_task(client()) for _ in range(8)]
        result = await rig.rollouts.switch_model("chat", "v2", "immediate")
        assert result.success
        assert result.operation_id is not None
        final = await rig.rollouts.wait(result.operation_id)
        assert final["status"] == "completed"
        served_after = len(outcomes)
        for _ in range(50):  # while the clients go on
            outcomes.append(await rig.call())
        stop.set()
        await asyncio.gather(*clients)
        assert all(ok for _, ok in outcomes)
        assert {v for v, _ in outcomes[served_after:]} == {"v2"}
        # The old version waits for its last lease before it goes.
        assert rig.pool.state("chat") is ModelState.READY
        gone = asyncio.ensure_future(rig.pool.unload("chat"))
        rig.pool.release(held)
        await gone
        assert rig.pool.state("chat") is ModelState.UNLOADED
        assert dict(rig.rollouts.weights("chat")) == {"v2": 1.0}


# --- gradual --------------------------------------------------------------------------


async def test_gradual_moves_the_share_in_equal_steps_over_the_duration() -> None:
    async with Rig() as rig:
        op = await rig.switch("v2", "gradual", {"steps": 4, "duration": "40s"})
        seen = []
        for _ in range(4):
            seen.append(rig.share("v2"))
            await rig.step(10)
        assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0], abs=0.02)
        status = rig.rollouts.get_switch_status(op)
        assert status["status"] == "completed"
        assert status["progress"] == 1.0
        assert [h["share"] for h in status["history"] if "of traffic" in h["message"]] == [
            0.25, 0.5, 0.75, 1.0,
        ]  # fmt: skip


# --- A/B ------------------------------------------------------------------------------


async def test_ab_is_sticky_per_key_and_returns_traffic_when_the_test_ends() -> None:
    async with Rig() as rig:
        op = await rig.switch("v2", "ab", {"traffic_percentage": 30, "duration": "1h"})
        users = [f"user-{n}" for n in range(2000)]
        first = {user: rig.rollouts.route("chat", user) for user in users}
        for _ in range(3):
            assert {user: rig.rollouts.route("chat", user) for user in users} == first
        on_target = sum(name == "chat@v2" for name in first.values()) / len(users)
        assert on_target == pytest.approx(0.3, abs=0.03)
        # Through the pool too: one user, one version.
        assert {await rig.call(key="user-1") for _ in range(5)} == {
            (first["user-1"].partition("@")[2], True)
        }
        await rig.step(3600)
        status = rig.rollouts.get_switch_status(op)
        assert status["status"] == "completed"
        assert dict(rig.rollouts.weights("chat")) == {"v1": 1.0}


async def test_use_sync_routes_by_key_as_use_does() -> None:
    async with Rig() as rig:
        await rig.switch("v2", "ab", {"traffic_percentage": 50, "duration": "1h"})
        users = [f"user-{n}" for n in range(40)]
        routed = {user: rig.rollouts.route("chat", user).partition("@")[2] for user in users}
        assert set(routed.values()) == {"v1", "v2"}

        def leased_from_a_script() -> dict[str, str]:
            leased = {}
            for user in users:
                with rig.pool.use_sync("chat", key=user) as lease:
                    leased[user] = rig.pool.spec(lease.model_id).version
            return leased

        # From a plain thread, as a script would; the pool's loop keeps running here.
        assert await asyncio.to_thread(leased_from_a_script) == routed


# --- canary and automatic rollback ----------------------------------------------------


async def test_a_canary_of_a_version_failing_30_percent_rolls_back_within_a_period() -> None:
    async with Rig(chat(v2={"fail_requests": 0.3})) as rig:
        op = await rig.switch(
            "v2", "canary", {"initial_percentage": 50, "step_percentage": 25, "period": "5m"}
        )
        outcomes = []
        for _ in range(200):
            rig.clock.advance(0.5)  # 100 s of traffic: within the first 5-minute period
            outcomes.append(await rig.call())
            if rig.rollouts.get_switch_status(op)["status"] != "running":
                break
        status = rig.rollouts.get_switch_status(op)
        assert status["status"] == "rolled_back"
        assert "error_rate" in status["reason"]
        assert ">= 0.2" in status["reason"]
        assert rig.clock() - 1000.0 < 300
        assert dict(rig.rollouts.weights("chat")) == {"v1": 1.0}
        # Only the canary's share ever failed; the source served every other request.
        assert all(ok for version, ok in outcomes if version == "v1")
        assert {await rig.call() for _ in range(10)} == {("v1", True)}


async def test_a_healthy_canary_steps_up_each_period_and_completes() -> None:
    async with Rig() as rig:
        op = await rig.switch(
            "v2", "canary", {"initial_percentage": 10, "step_percentage": 45, "period": "1m"}
        )
        shares = []
        for _ in range(3):
            shares.append(rig.share("v2"))
            for _ in range(30):
                rig.clock.advance(2)
                assert (await rig.call())[1]
            rig.rollouts.tick()
        assert shares == pytest.approx([0.10, 0.55, 1.0], abs=0.02)
        final = await rig.rollouts.wait(op)
        assert final["status"] == "completed"
        await rig.rollouts.settle()  # the source's unload runs as a task
        assert rig.pool.state("chat") is ModelState.UNLOADED
        assert rig.pool.state("chat@v2") is ModelState.READY


# --- refusals, failures, manual control -----------------------------------------------


async def test_validation_returns_every_problem_and_nothing_moves() -> None:
    async with Rig() as rig:
        check = rig.rollouts.validate_switch_request(
            "chat", "v9", "canary", {"initial_percentag": 5, "period": "soon"}
        )
        assert not check["valid"]
        joined = " | ".join(check["errors"])
        assert "did you mean 'initial_percentage'" in joined
        assert "period" in joined
        assert "no version 'v9'" in joined
        assert rig.rollouts.validate_switch_request("chat", "v1")["errors"] == [
            "'v1' already serves all of 'chat''s traffic"
        ]
        assert not rig.rollouts.validate_switch_request("nope", "v2")["valid"]


async def test_a_target_that_cannot_fit_beside_the_source_is_refused_up_front() -> None:
    big = chat(v2={"memory": "7GB"})
    async with Rig(big, budget=8 * GB) as rig:
        result = await rig.rollouts.switch_model("chat", "v2", "canary")
        assert not result.success
        assert result.operation_id is None
        assert "chat and chat@v2 need 8.4 GiB together on cpu" in result.errors[0]
        assert dict(rig.rollouts.weights("chat")) == {"v1": 1.0}
        assert rig.backend.loads == []


async def test_a_target_that_fails_to_load_fails_the_operation_with_nothing_moved() -> None:
    async with Rig(chat(v2={"fail_loads": 1, "fail_message": "weights corrupt"})) as rig:
        result = await rig.rollouts.switch_model("chat", "v2", "canary")
        assert result.operation_id is not None
        final = await rig.rollouts.wait(result.operation_id)
        assert final["status"] == "failed"
        assert "weights corrupt" in final["reason"]
        assert dict(rig.rollouts.weights("chat")) == {"v1": 1.0}
        assert rig.pool.pinned("chat") is False
        assert rig.rollouts.validate_switch_request("chat", "v2")["errors"] == [
            "chat@v2 failed to load; load it explicitly to try again"
        ]


async def test_abort_and_manual_rollback() -> None:
    async with Rig() as rig:
        first = await rig.rollouts.switch_model("chat", "v2", "canary")
        assert first.operation_id is not None
        await rig.rollouts.wait(first.operation_id, Status.RUNNING)
        aborted = rig.rollouts.abort(first.operation_id)
        assert aborted["status"] == "aborted"
        assert dict(rig.rollouts.weights("chat")) == {"v1": 1.0}
        with pytest.raises(SwitchRefused, match="already ended"):
            rig.rollouts.abort(first.operation_id)
        with pytest.raises(SwitchRefused, match="nothing to roll back"):
            await rig.rollouts.rollback("chat")
        done = await rig.rollouts.switch_model("chat", "v2")
        assert done.operation_id is not None
        await rig.rollouts.wait(done.operation_id)
        back = await rig.rollouts.rollback("chat")
        assert (back["source"], back["target"], back["strategy"]) == ("v2", "v1", "immediate")
        await rig.rollouts.wait(back["operation_id"])
        assert dict(rig.rollouts.weights("chat")) == {"v1": 1.0}
        assert [op["status"] for op in rig.rollouts.operations("chat")] == [
            "completed", "completed", "aborted",
        ]  # fmt: skip


# --- persistence ----------------------------------------------------------------------


async def test_registry_weights_and_history_survive_a_restart(tmp_path: Path) -> None:
    async with Rig(state_dir=tmp_path) as rig:
        rig.rollouts.register_version("chat", "v3", {"load_seconds": 0.01}, author="ana")
        result = await rig.rollouts.switch_model("chat", "v3")
        assert result.operation_id is not None
        await rig.rollouts.wait(result.operation_id)
    async with Rig(state_dir=tmp_path) as again:
        assert again.pool.versions("chat") == {"v1": "chat", "v2": "chat@v2", "v3": "chat@v3"}
        assert dict(again.rollouts.weights("chat")) == {"v3": 1.0}
        v3 = next(v for v in again.rollouts.versions("chat") if v["version"] == "v3")
        assert (v3["origin"], v3["author"]) == ("runtime", "ana")
        assert again.rollouts.operations("chat")[0]["status"] == "completed"
        assert await again.call() == ("v3", True)


async def test_an_operation_cut_short_by_a_crash_ends_on_its_source(tmp_path: Path) -> None:
    rig = Rig(state_dir=tmp_path)
    await rig.pool.start()
    await rig.rollouts.start()
    result = await rig.rollouts.switch_model("chat", "v2", "canary", {"initial_percentage": 40})
    assert result.operation_id is not None
    await rig.rollouts.wait(result.operation_id, Status.RUNNING)
    saved = read_json(tmp_path / "rollouts.json")
    assert saved["data"]["models"]["chat"]["weights"] == [["v2", 0.4], ["v1", 0.6]]
    # No stop: as after SIGKILL, the file is all that is left.
    await rig.pool.stop()
    async with Rig(state_dir=tmp_path) as again:
        status = again.rollouts.get_switch_status(result.operation_id)
        assert status["status"] == "aborted"
        assert "restart" in status["reason"]
        assert dict(again.rollouts.weights("chat")) == {"v1": 1.0}


async def test_a_corrupt_state_file_is_set_aside_and_the_last_good_copy_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Rig(state_dir=tmp_path) as rig:
        result = await rig.rollouts.switch_model("chat", "v2")
        assert result.operation_id is not None
        await rig.rollouts.wait(result.operation_id)
        rig.rollouts.register_version("chat", "v3", {})  # the write that is torn below
    tear(tmp_path / "rollouts.json", keep=40)
    async with Rig(state_dir=tmp_path) as again:
        assert dict(again.rollouts.weights("chat")) == {"v2": 1.0}  # from rollouts.json.bak
        assert "v3" not in again.pool.versions("chat")
    assert any("rollouts.json" in r.getMessage() for r in caplog.records)
    assert set_aside(tmp_path) == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: b"\0" * len(raw), id="zero-filled"),
        pytest.param(lambda raw: b'{"kind": "rollouts", "version": 1, "data": []}', id="schema"),
        pytest.param(lambda raw: raw.replace(b'"rollouts"', b'"estimates"', 1), id="kind"),
    ],
)
async def test_a_damaged_state_file_falls_back_to_the_backup(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    async with Rig(state_dir=tmp_path) as rig:
        result = await rig.rollouts.switch_model("chat", "v2")
        assert result.operation_id is not None
        await rig.rollouts.wait(result.operation_id)
        rig.rollouts.register_version("chat", "v3", {})
    rewrite(tmp_path / "rollouts.json", damage)
    async with Rig(state_dir=tmp_path) as again:
        assert dict(again.rollouts.weights("chat")) == {"v2": 1.0}
        assert again.rollouts.operations("chat")[0]["status"] == "completed"
    assert set_aside(tmp_path) == 1


def test_thresholds_come_from_the_config_with_per_model_overrides() -> None:
    config = Config.from_yaml(
        "pool: {budgets: {cpu: 8GB}}\n"
        "health: {window: 30s, thresholds: {critical_error_rate: 0.5, min_requests: 5}}\n"
        "models:\n"
        "  a: {backend: fake, memory: 1GB, device: cpu, thresholds: {critical_p95: 2s}}\n"
        "  b: {backend: fake, memory: 1GB, device: cpu}\n"
    )
    pool = ModelPool.from_config(config, backends={"fake": FakeBackend()}, estimates=None)
    rollouts = RolloutManager.from_config(pool, config, state_dir=None)
    health = rollouts.health
    assert health.window == 30.0
    assert health.thresholds_for("b") == Thresholds(critical_error_rate=0.5, min_requests=5)
    assert health.thresholds_for("a") == Thresholds(
        critical_error_rate=0.5, min_requests=5, critical_p95=2.0
    )


async def test_an_unwritable_state_dir_is_reported_and_rollouts_go_on(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"  # a file where the folder should be: even root cannot
    blocker.write_text("not a folder")
    async with Rig(state_dir=blocker) as rig:
        result = await rig.rollouts.switch_model("chat", "v2")
        assert result.operation_id is not None
        assert (await rig.rollouts.wait(result.operation_id))["status"] == "completed"
        assert rig.rollouts.save_error is not None
        assert "blocker" in rig.rollouts.save_error
        assert dict(rig.rollouts.weights("chat")) == {"v2": 1.0}
