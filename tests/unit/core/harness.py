"""A scheduler on a manual clock with recording effects: decisions without a loop."""

from __future__ import annotations

from typing import Any

from modelpool.config import ModelSpec, PoolSettings
from modelpool.core.lease import Lease, Waiter
from modelpool.core.ports import Handle
from modelpool.core.scheduler import Scheduler
from modelpool.core.states import ModelState
from modelpool.core.testing import ManualClock, RecordingEffects
from modelpool.plugins import POLICIES

GB = 10**9
REMOTE = {"backend": "remote", "url": "http://10.0.0.5:8000/v1"}
"""A model served elsewhere: placed by the pool, booked with no bytes (its estimate)."""


def _placed(fields: dict[str, Any]) -> dict[str, Any]:
    """On the cpu unless said otherwise; a remote model is placed by the pool alone."""
    return fields if fields.get("backend") == "remote" else {"device": "cpu", **fields}


class Harness:
    def __init__(
        self,
        models: dict[str, dict[str, Any]],
        budgets: dict[str, int] | None = None,
        policy: str = "lru",
        warm_budget: int = 0,
        offloadable: tuple[str, ...] = (),
        warm_size: Any = None,
        **settings: Any,
    ) -> None:
        specs = [
            ModelSpec(id=model_id, **{"backend": "fake", **_placed(fields)})
            for model_id, fields in models.items()
        ]
        self.clock = ManualClock()
        self.fx = RecordingEffects()
        self.s = Scheduler(
            specs,
            {spec.id: 0 if spec.remote else spec.memory or GB for spec in specs},
            POLICIES.get(policy)(),
            self.fx,
            self.clock,
            PoolSettings(budgets=budgets or {"cpu": 8 * GB}, warm_budget=warm_budget, **settings),
            offloadable=offloadable,
            **({"warm_size": warm_size} if warm_size is not None else {}),
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
        """An unload (or the drop of a warm copy) is done."""
        self.s.on_unload_done(model)

    def finish_offload(self, model: str, ok: bool = True, footprint: int | None = None) -> None:
        warm = self.fx.warm_handle_for(model, footprint) if ok else None
        self.s.on_offload_done(model, warm, None if ok else "offload boom", 0.5)

    def in_flight(self) -> dict[str, list[str]]:
        """What a real shell would have running now, by kind."""
        warm = self.s.warm.account
        flight: dict[str, list[str]] = {"unload": [], "offload": [], "load": []}
        for r in self.s.records():
            if (r.state is ModelState.UNLOADING and not r.offloading) or (
                r.state is ModelState.WARM and r.warm_dropping
            ):
                flight["unload"].append(r.model_id)
            elif r.offloading and r.model_id in warm.started:
                flight["offload"].append(r.model_id)
            elif r.state is ModelState.LOADING and r.load_started:
                flight["load"].append(r.model_id)
        return flight

    def load(self, *models: str) -> None:
        """Bring models resident through the public path, finishing every step."""
        for model in models:
            self.s.load(model)
            self.settle()

    def used_in_order(self, *models: str) -> None:
        """Load each model and use it once, a second apart: the lru order is this order."""
        for model in models:
            self.clock.advance(1)
            self.load(model)
            self.s.release(self.lease(model))

    def settle(self) -> None:
        """Finish every unload, then every started load, until nothing is in flight."""
        while True:
            flight = self.in_flight()
            if not any(flight.values()):
                return
            for model in flight["unload"]:
                self.finish_unload(model)
            for model in flight["offload"]:
                self.finish_offload(model)
            for model in flight["load"]:
                self.finish_load(model)

    # --- reading ---------------------------------------------------------------------

    def state(self, model: str) -> ModelState:
        return self.s.resolve(model).state

    def started_loads(self) -> list[str]:
        return [model for model, _ in self.fx.loads]
