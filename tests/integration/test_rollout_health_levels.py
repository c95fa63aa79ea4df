"""What a guarded rollout does at each health level: ``warning`` holds, ``critical`` rolls back.

The real pool with the shipped fake backend; the manager runs without its timer
(``interval=None``) on a manual clock, so each step happens when the test says.
Failures come from the fake model's ``fail_requests`` (an exact share of calls) or are
reported through the manager's ``record``, as the pool does after each request.
"""

from __future__ import annotations

import random
from typing import Any

from modelpool import FakeBackend, ModelPool, ModelSpec
from modelpool.backends.fake import FakeRequestError
from modelpool.core.testing import ManualClock
from modelpool.monitor.health import HealthMonitor, Level, Thresholds
from modelpool.rollout import RolloutManager, Status

GB = 10**9
PERIOD = 60.0


class Rig:
    """A pool of one model with a v2 that fails ``fail`` of its calls, and its rollouts."""

    def __init__(self, fail: float) -> None:
        self.clock = ManualClock()
        spec = ModelSpec(
            id="chat",
            backend="fake",
            memory=2 * GB,
            device="cpu",
            versions={"v2": {"fail_requests": fail}},
        )
        self.pool = ModelPool(
            [spec],
            budgets={"cpu": 8 * GB},
            backends={"fake": FakeBackend()},
            clock=self.clock,
        )
        # The defaults: warning at 5 % errors, critical at 20 %, judged from 20 requests.
        self.health = HealthMonitor(self.clock, window=120.0, thresholds=Thresholds())
        self.rollouts = RolloutManager(
            self.pool,
            health=self.health,
            clock=self.clock,
            rng=random.Random(1),
            interval=None,
        )

    async def __aenter__(self) -> Rig:
        await self.pool.start()
        await self.rollouts.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.rollouts.stop()
        await self.pool.stop()

    async def canary(self) -> str:
        settings = {"initial_percentage": 10, "step_percentage": 45, "period": "1m"}
        result = await self.rollouts.switch_model("chat", "v2", "canary", settings)
        assert result.operation_id is not None, result.errors
        await self.rollouts.wait(result.operation_id, Status.RUNNING, Status.FAILED)
        return result.operation_id

    async def calls_to_v2(self, n: int) -> int:
        """``n`` requests pinned to v2, through the pool; how many failed."""
        failed = 0
        for _ in range(n):
            try:
                async with self.pool.use("chat@v2") as lease:
                    lease.obj("hello")
            except FakeRequestError:
                failed += 1
        return failed

    def status(self, op: str) -> dict[str, Any]:
        return self.rollouts.get_switch_status(op)


async def test_a_canary_at_warning_is_held_at_its_share_not_rolled_back() -> None:
    async with Rig(fail=0.1) as rig:
        op = await rig.canary()
        assert rig.status(op)["share"] == 0.1
        rig.clock.advance(PERIOD - 10)
        assert await rig.calls_to_v2(40) == 4  # 10 %: over warning (5 %), under critical
        assert rig.health.level("chat", "v2") is Level.WARNING
        assert rig.status(op)["status"] == "running"  # the warning alert rolled nothing back

        rig.clock.advance(11)  # the period is over: a healthy canary would step up
        rig.rollouts.tick()
        status = rig.status(op)
        assert status["status"] == "running"
        assert status["share"] == 0.1
        assert status["history"][-1]["message"] == "held at 10%: v2 is at warning"
        assert dict(rig.rollouts.weights("chat")) == {"v2": 0.1, "v1": 0.9}

        held = len(rig.status(op)["history"])
        rig.clock.advance(PERIOD / 2)  # the hold lasts a whole period from now
        rig.rollouts.tick()
        assert len(rig.status(op)["history"]) == held
        rig.clock.advance(PERIOD / 2 + 1)  # still at warning: held for another period
        rig.rollouts.tick()
        assert rig.status(op)["history"][-1]["message"] == "held at 10%: v2 is at warning"
        assert len(rig.status(op)["history"]) == held + 1
        assert rig.status(op)["share"] == 0.1


async def test_a_canary_that_turns_critical_is_rolled_back_at_once() -> None:
    async with Rig(fail=0.1) as rig:
        op = await rig.canary()
        await rig.calls_to_v2(40)  # warning: 4 of 40
        assert rig.status(op)["status"] == "running"
        for _ in range(4):  # 8 of 44 = 0.18: still warning
            rig.rollouts.record("chat@v2", 0.1, ok=False)
        assert rig.health.level("chat", "v2") is Level.WARNING
        assert rig.status(op)["status"] == "running"
        rig.rollouts.record("chat@v2", 0.1, ok=False)  # 9 of 45 = 0.2: critical, exactly
        assert rig.health.level("chat", "v2") is Level.CRITICAL
        status = rig.status(op)  # no tick needed: the alert itself rolled it back
        assert status["status"] == "rolled_back"
        assert status["share"] == 0.0
        assert status["reason"] == (
            "v2 is critical: error_rate 0.2 >= 0.2 over 45 requests in the last 120s"
        )
        assert dict(rig.rollouts.weights("chat")) == {"v1": 1.0}


async def test_a_canary_of_a_version_already_critical_is_rolled_back_at_the_first_tick() -> None:
    async with Rig(fail=0.0) as rig:
        for _ in range(30):  # v2 failed before the rollout: its critical alert is old news
            rig.rollouts.record("chat@v2", 0.1, ok=False)
        assert rig.health.level("chat", "v2") is Level.CRITICAL
        op = await rig.canary()
        assert rig.status(op)["status"] == "running"
        rig.rollouts.tick()  # no new alert: the tick's own judgement must see it
        status = rig.status(op)
        assert status["status"] == "rolled_back"
        assert status["reason"].startswith("v2 is critical: error_rate 1 >= 0.2")
