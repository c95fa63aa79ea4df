"""RolloutManager paths the broader rollout tests pass by: describe, rollback, abort,
unregister's refusals, alert events, and a state file restored field by field.

The real pool with the shipped fake backend; the manager runs without its timer on a
manual clock (``interval=None``), so each step happens when the test says.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest

from modelpool import Config, FakeBackend, ModelPool, ModelSpec
from modelpool.core.events import EventKind
from modelpool.core.testing import ManualClock
from modelpool.errors import SwitchRefused, UnknownOperation
from modelpool.monitor.health import HealthMonitor, Thresholds
from modelpool.rollout import RolloutManager, Status

GB = 10**9
WALL0 = 1_790_000_000.0


class Rig:
    """A pool of one model ``chat`` (alias ``talk``, versions v1 and v2) and its rollouts."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.clock = ManualClock()
        spec = ModelSpec(
            id="chat",
            backend="fake",
            memory=2 * GB,
            device="cpu",
            aliases=("talk",),
            versions={"v2": {"author": "bo", "notes": "second"}},
        )
        self.pool = ModelPool(
            [spec], budgets={"cpu": 8 * GB}, backends={"fake": FakeBackend()}, clock=self.clock
        )
        self.health = HealthMonitor(self.clock, window=60, thresholds=Thresholds(min_requests=5))
        self.rollouts = RolloutManager(
            self.pool,
            health=self.health,
            state_dir=state_dir,
            clock=self.clock,
            wall=lambda: WALL0 + self.clock(),
            rng=random.Random(3),
            interval=None,
        )

    async def __aenter__(self) -> Rig:
        await self.pool.start()
        await self.rollouts.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.rollouts.stop()
        await self.pool.stop()

    async def start(self, target: str, strategy: str = "immediate", **settings: Any) -> str:
        result = await self.rollouts.switch_model("chat", target, strategy, settings)
        assert result.operation_id is not None, result.errors
        await self.rollouts.wait(
            result.operation_id, Status.RUNNING, Status.COMPLETED, Status.FAILED
        )
        return result.operation_id

    def weights(self) -> dict[str, float]:
        return dict(self.rollouts.weights("chat"))


# --- describe, versions, operations -----------------------------------------------------


async def test_describe_shows_the_split_the_versions_and_the_running_rollout() -> None:
    async with Rig() as rig:
        op = await rig.start("v2", "canary", initial_percentage=10, period="1m")
        described = rig.rollouts.describe("talk")
        assert described["model"] == "chat"
        assert described["serving"] == "v1"
        assert described["weights"] == {"v2": 0.1, "v1": 0.9}
        assert described["rollout"]["operation_id"] == op
        assert described["rollout"]["status"] == "running"
        versions = {v["version"]: v for v in described["versions"]}
        assert versions["v2"]["in_rollout"] is True
        assert versions["v1"]["in_rollout"] is True
        assert (versions["v2"]["weight"], versions["v1"]["weight"]) == (0.1, 0.9)
        assert (versions["v2"]["author"], versions["v2"]["notes"]) == ("bo", "second")
        assert versions["v2"]["id"] == "chat@v2"
        assert versions["v2"]["name"] == "chat@v2"
        assert versions["v1"]["state"] == "ready"
        assert rig.rollouts.models_with_versions() == ["chat"]

        rig.rollouts.abort(op)
        after = rig.rollouts.describe("chat")
        assert after["rollout"] is None
        assert {v["version"]: v["in_rollout"] for v in after["versions"]} == {
            "v1": False,
            "v2": False,
        }


async def test_operations_are_listed_newest_first_and_by_model() -> None:
    async with Rig() as rig:
        first = await rig.start("v2")
        second = await rig.start("v1")
        listed = rig.rollouts.operations("talk")
        assert [o["operation_id"] for o in listed] == [second, first]
        assert [o["operation_id"] for o in rig.rollouts.operations()] == [second, first]
        with pytest.raises(UnknownOperation, match="no rollout operation 'op-nope'"):
            rig.rollouts.get_switch_status("op-nope")


# --- rollback and abort -----------------------------------------------------------------


async def test_rollback_with_nothing_completed_is_refused() -> None:
    async with Rig() as rig:
        with pytest.raises(SwitchRefused) as refused:
            await rig.rollouts.rollback("talk")
        assert refused.value.problems == ["nothing to roll back: no rollout of 'chat' completed"]
        assert refused.value.model_id == "chat"
        assert rig.weights() == {"v1": 1.0}


async def test_rollback_after_a_completed_switch_goes_back_to_its_source() -> None:
    async with Rig() as rig:
        first = await rig.start("v2")
        assert rig.weights() == {"v2": 1.0}
        back = await rig.rollouts.rollback("chat")
        assert (back["source"], back["target"], back["strategy"]) == ("v2", "v1", "immediate")
        assert back["history"][-1]["message"] == f"rollback of {first}"
        final = await rig.rollouts.wait(back["operation_id"])
        assert final["status"] == "completed"
        assert rig.weights() == {"v1": 1.0}
        # The rollback itself completed: rolling back again returns to v2.
        again = await rig.rollouts.rollback("chat")
        assert (again["source"], again["target"]) == ("v1", "v2")


async def test_rollback_of_a_running_rollout_ends_it_on_its_source() -> None:
    async with Rig() as rig:
        op = await rig.start("v2", "canary", initial_percentage=30, period="1m")
        ended = await rig.rollouts.rollback("chat")
        assert ended["operation_id"] == op
        assert ended["status"] == "rolled_back"
        assert ended["reason"] == "rolled back by an operator"
        assert ended["share"] == 0.0
        assert rig.weights() == {"v1": 1.0}


async def test_abort_of_an_ended_or_unknown_operation_is_refused() -> None:
    async with Rig() as rig:
        op = await rig.start("v2")
        with pytest.raises(SwitchRefused) as refused:
            rig.rollouts.abort(op)
        assert refused.value.problems == [f"operation {op} has already ended (completed)"]
        assert refused.value.model_id == "chat"
        with pytest.raises(UnknownOperation):
            rig.rollouts.abort("op-nope")


async def test_abort_of_a_running_rollout_puts_traffic_back_at_once() -> None:
    async with Rig() as rig:
        op = await rig.start("v2", "canary", initial_percentage=50, period="1m")
        aborted = rig.rollouts.abort(op)
        assert (aborted["status"], aborted["reason"]) == ("aborted", "aborted by an operator")
        assert rig.weights() == {"v1": 1.0}
        await rig.rollouts.settle()
        assert rig.pool.state("chat@v2").value == "unloaded"


# --- unregister's refusals ---------------------------------------------------------------


async def test_unregister_names_every_reason_it_refuses() -> None:
    async with Rig() as rig:
        rig.rollouts.register_version("chat", "v3", {"load_seconds": 0.0})
        op = await rig.start("v3", "canary", initial_percentage=40, period="1m")
        with pytest.raises(SwitchRefused) as refused:
            await rig.rollouts.unregister_version("chat", "v3")
        assert refused.value.problems == [
            "'v3' carries traffic; switch away from it first",
            f"'v3' is part of rollout {op}; abort it first",
        ]
        assert refused.value.model_id == "chat"
        with pytest.raises(SwitchRefused) as refused:
            await rig.rollouts.unregister_version("chat", "v2")
        assert refused.value.problems == ["'v2' is declared in the config file; remove it there"]
        rig.rollouts.abort(op)
        await rig.rollouts.settle()
        await rig.rollouts.unregister_version("chat", "v3")
        assert "v3" not in rig.pool.versions("chat")
        kinds = [(e.kind, e.detail.get("version")) for e in rig.pool.recent_events()]
        assert (EventKind.VERSION_REGISTERED, "v3") in kinds
        assert (EventKind.VERSION_UNREGISTERED, "v3") in kinds


# --- alerts become events ------------------------------------------------------------------


async def test_each_alert_is_published_with_its_figures() -> None:
    async with Rig() as rig:
        for _ in range(5):
            rig.rollouts.record("chat@v2", 0.25, ok=False)
        [event] = [e for e in rig.pool.recent_events() if e.kind is EventKind.ALERT]
        assert event.model_id == "chat"
        assert dict(event.detail) == {
            "version": "v2",
            "level": "critical",
            "metric": "error_rate",
            "value": 1.0,
            "threshold": 0.2,
            "resolved": False,
        }
        assert rig.health.stats("chat", "v2").p50 == 0.25
        rig.rollouts.record("chat@v2", -0.5, ok=True)  # a clock step back counts as 0 s
        assert rig.health.stats("chat", "v2").p50 == 0.25
        assert rig.health.stats("chat", "v2").requests == 6
        rig.rollouts.record("unknown-model", 0.1, ok=False)  # forgotten: ignored
        assert rig.health.stats("unknown-model", None).requests == 0


# --- the state file --------------------------------------------------------------------------


async def test_a_runtime_version_and_the_split_survive_a_restart(tmp_path: Path) -> None:
    async with Rig(tmp_path) as rig:
        added = rig.rollouts.register_version(
            "chat", "v3", {"load_seconds": 0.0}, author="ana", notes="faster"
        )
        await rig.start("v3")
    async with Rig(tmp_path) as again:
        listed = {v["version"]: v for v in again.rollouts.versions("chat")}
        v3 = listed["v3"]
        assert (v3["origin"], v3["author"], v3["notes"]) == ("runtime", "ana", "faster")
        assert v3["created"] == added["created"]
        assert again.weights() == {"v3": 1.0}
        assert again.rollouts.serving_version("chat") == "v3"
        saved = again.rollouts.registry.saved()
        assert saved["chat"]["versions"]["v3"] == {
            "settings": {"load_seconds": 0.0},
            "author": "ana",
            "notes": "faster",
            "created": added["created"],
        }


async def test_what_a_state_file_holds_that_no_longer_fits_is_logged_and_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Rig() as rig:
        registry = rig.rollouts.registry
        saved = {
            "gone": {"versions": {}, "weights": None},
            "chat": {
                "versions": {
                    "v2": {"settings": {}},  # now declared in the config
                    "v9": {"settings": {"load_secnds": 1}},
                    "v4": {
                        "settings": {"load_seconds": 0.0},
                        "author": "al",
                        "notes": "n",
                        "created": "2026-01-01T00:00:00.000+00:00",
                    },
                },
                "weights": [["v4", 0.25], ["v1", 0.75]],
            },
        }
        with caplog.at_level(logging.WARNING, logger="modelpool.rollout"):
            registry.restore(saved, "rollouts.json")
        messages = [r.getMessage() for r in caplog.records]
        assert messages[0] == "rollouts.json: model 'gone' is not configured any more; ignored"
        assert messages[1] == "rollouts.json: chat@v2 is now in the config; the config wins"
        assert messages[2].startswith("rollouts.json: version chat@v9 cannot be registered again: ")
        assert "rollouts.json: versions.v9.load_secnds: unknown key" in messages[2]
        assert len(messages) == 3
        v4 = registry.info("chat", "v4")
        assert (v4.record, v4.origin, v4.author, v4.notes) == ("chat@v4", "runtime", "al", "n")
        assert (v4.created, v4.settings) == ("2026-01-01T00:00:00.000+00:00", {"load_seconds": 0.0})
        assert registry.weights("chat") == (("v4", 0.25), ("v1", 0.75))
        assert "v9" not in registry.versions["chat"]

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="modelpool.rollout"):
            registry.restore({"chat": {"weights": [["v7", 1.0]]}}, "rollouts.json")
        assert [r.getMessage() for r in caplog.records] == [
            "rollouts.json: chat's split names a version it lacks; reset"
        ]
        assert registry.weights("chat") == (("v4", 0.25), ("v1", 0.75))


def test_from_config_puts_the_health_monitor_on_the_given_clock() -> None:
    config = Config.from_yaml(
        "pool: {budgets: {cpu: 4GB}}\n"
        "health: {window: 30s, thresholds: {min_requests: 1}}\n"
        "models:\n"
        "  chat: {backend: fake, memory: 1GB, device: cpu, versions: {v2: {}}}\n"
    )
    clock = ManualClock()
    pool = ModelPool.from_config(config, backends={"fake": FakeBackend()}, estimates=None)
    rollouts = RolloutManager.from_config(pool, config, state_dir=None, clock=clock)
    rollouts.health.record("chat", "v2", 0.1, ok=False)
    assert rollouts.health.stats("chat", "v2").requests == 1
    clock.advance(31.0)  # the window passes on this clock, whatever the wall says
    assert rollouts.health.stats("chat", "v2").requests == 0


async def test_a_completed_switch_gives_the_target_everything() -> None:
    async with Rig() as rig:
        op = await rig.start("v2", "gradual", steps=1, duration=10)
        rig.clock.advance(10.0)
        rig.rollouts.tick()
        final = await rig.rollouts.wait(op)
        assert (final["status"], final["share"], final["progress"]) == ("completed", 1.0, 1.0)
        assert final["reason"] == "v2 takes all traffic"
        assert rig.weights() == {"v2": 1.0}


async def test_an_ab_test_that_ends_puts_all_traffic_back_on_the_source() -> None:
    async with Rig() as rig:
        op = await rig.start("v2", "ab", percentage=50, duration="10m")
        assert rig.weights() == {"v2": 0.5, "v1": 0.5}
        rig.clock.advance(600.0)
        rig.rollouts.tick()
        final = await rig.rollouts.wait(op)
        assert (final["status"], final["share"]) == ("completed", 0.0)
        assert final["reason"] == "test over; traffic back on the source"
        assert rig.weights() == {"v1": 1.0}
        await rig.rollouts.settle()
        assert rig.pool.state("chat@v2").value == "unloaded"


async def test_only_models_with_several_versions_are_routed() -> None:
    rig = Rig()
    rig.pool = ModelPool(
        [
            ModelSpec(id="chat", backend="fake", memory=GB, device="cpu", versions={"v2": {}}),
            ModelSpec(id="solo", backend="fake", memory=GB, device="cpu"),
        ],
        budgets={"cpu": 8 * GB},
        backends={"fake": FakeBackend()},
        clock=rig.clock,
    )
    rig.rollouts = RolloutManager(rig.pool, clock=rig.clock, interval=None)
    async with rig:
        assert rig.rollouts.models_with_versions() == ["chat"]
        assert rig.rollouts.route("solo", None) == "solo"
        assert rig.rollouts.route("chat", "k") == "chat@v1"
