"""The simulator replays max_models, watermarks and preloads as the pool applies them."""

from __future__ import annotations

from modelpool.config import PoolSettings
from modelpool.plugins import POLICIES
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet, SimModel
from modelpool.sim.workload import Request, Workload

GB = 1000**3


def model(model_id: str, *, preload: int | None = None) -> SimModel:
    return SimModel(
        id=model_id, bytes=GB, load_seconds=2.0, unload_seconds=1.0, device="gpu",
        preload=preload,
    )  # fmt: skip


def replay(arrivals: list[tuple[float, str]], models: list[SimModel], **settings: object):  # type: ignore[no-untyped-def]
    model_set = ModelSet("test", tuple(models), {"gpu": 3 * GB})
    workload = Workload("test", tuple(Request(t, m, service=1.0) for t, m in arrivals))
    pool = PoolSettings().changed(**settings)
    return Simulation(workload, model_set, POLICIES.get("lru")(), settings=pool).run()


ABCD = [model("a"), model("b"), model("c"), model("d")]
THEN_D = [(0.0, "a"), (5.0, "b"), (10.0, "c"), (20.0, "d")]


def test_a_preloaded_model_is_a_hit_on_its_first_request() -> None:
    cold = replay([(10.0, "a")], [model("a"), model("b")])
    warm = replay([(10.0, "a")], [model("a", preload=1), model("b")])
    assert (cold.hits, cold.total_wait) == (0, 2.0)
    assert (warm.hits, warm.total_wait, warm.preloads) == (1, 0.0, 1)


def test_preloads_fill_the_budget_in_priority_order_and_no_further() -> None:
    models = [model(name, preload=rank) for rank, name in enumerate("dcba")]
    result = replay([(30.0, "d"), (31.0, "c"), (32.0, "b"), (33.0, "a")], models)
    assert result.preloads == 3  # d, c, b: a (last in order) finds no room nobody needs
    assert result.hits == 3


def test_a_high_watermark_frees_room_before_the_next_cold_request() -> None:
    plain = replay(THEN_D, ABCD)
    ahead = replay(THEN_D, ABCD, high_watermark=0.7, low_watermark=0.6)
    # d's request: without a watermark it waits for an eviction (1 s) and its load (2 s).
    assert plain.total_wait == 4 * 2.0 + 1.0
    assert ahead.total_wait == 4 * 2.0
    assert ahead.unloads > plain.unloads


def test_max_models_caps_what_is_loaded_at_once() -> None:
    result = replay([(0.0, "a"), (5.0, "b"), (10.0, "a")], ABCD, max_models=1)
    assert result.cold_loads == 3  # b evicts a, a evicts b: the budget alone would keep both
    assert replay([(0.0, "a"), (5.0, "b"), (10.0, "a")], ABCD).cold_loads == 2
