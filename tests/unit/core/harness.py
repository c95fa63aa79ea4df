"""A scheduler on a manual clock with recording effects: decisions without a loop."""

from __future__ import annotations

from typing import Any

from modelpool.config import ModelSpec
from modelpool.core.lease import Lease, Waiter
from modelpool.core.ports import Handle
from modelpool.core.scheduler import Scheduler, SchedulerSettings
from modelpool.core.states import ModelState
from modelpool.core.testing import ManualClock, RecordingEffects
from modelpool.plugins import POLICIES

GB = 10**9


class Harness:
    def __init__(
        self,
        models: dict[str, dict[str, Any]],
        budgets: dict[str, int] | None = None,
        policy: str = "lru",
        **settings: Any,
    ) -> None:
        specs = [
            ModelSpec(id=model_id, backend="fake", **{"device": "cpu", **fields})
            for model_id, fields in models.items()
        ]
        self.clock = ManualClock()
        self.fx = RecordingEffects()
        self.s = Scheduler(
            specs,
            {spec.id: spec.memory or GB for spec in specs},
            budgets or {"cpu": 8 * GB},
            POLICIES.get(policy)(),
            self.fx,
            self.clock,
            SchedulerSettings(**settings),
        )

    # --- acting as the shell ---------------------------------------------------------

    def request(self, model: str, task_id: str | None = None, **kw: Any) -> Lease | Waiter:
        return self.s.request(model, task_id, **kw)

    def wait(self, model: str, task_id: str | None = None, **kw: Any) -> Waiter:
        result = self.s.request(model, task_id, **kw)
        assert isinstance(result, Waiter), f"expected {model} to queue, got a lease"
        return result

    def lease(self, model: str, task_id: str | None = None, **kw: Any) -> Lease:
        result = self.s.request(model, task_id, **kw)
        assert isinstance(result, Lease), f"expected a lease on {model}, it queued"
        return result

    def finish_load(self, model: str, footprint: int | None = None) -> None:
        device = self.s.resolve(model).device
        assert device is not None
        handle = Handle(model, device, obj=f"<{model}>", footprint=footprint)
        self.s.on_load_done(model, handle, None, 1.5)

    def fail_load(self, model: str, error: str = "boom") -> None:
        self.s.on_load_done(model, None, error, 0.1)

    def finish_unload(self, model: str) -> None:
        self.s.on_unload_done(model)

    def load(self, *models: str) -> None:
        """Bring models resident through the public path, finishing every step."""
        for model in models:
            self.s.load(model)
            self.settle()

    def settle(self) -> None:
        """Finish every unload, then every started load, until nothing is in flight."""
        while True:
            unloading = [r.model_id for r in self.s.records() if r.state is ModelState.UNLOADING]
            loading = [
                r.model_id
                for r in self.s.records()
                if r.state is ModelState.LOADING and r.load_started
            ]
            if not unloading and not loading:
                return
            for model in unloading:
                self.finish_unload(model)
            for model in loading:
                self.finish_load(model)

    # --- reading ---------------------------------------------------------------------

    def state(self, model: str) -> ModelState:
        return self.s.resolve(model).state

    def started_loads(self) -> list[str]:
        return [model for model, _ in self.fx.loads]
