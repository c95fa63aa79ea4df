"""The simulator replays through the real scheduler: hand-checked replays, the warm
tier, leases, and the bound and the exact optimum against brute force."""

from __future__ import annotations

import itertools
import random

import pytest

from modelpool.plugins import POLICIES
from modelpool.sim.bound import FurthestNextUsePolicy
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet, SimModel, parse_budgets
from modelpool.sim.optimum import OptimumTooLarge, exact_optimum
from modelpool.sim.workload import Request, Workload

GB = 1000**3


def model(model_id: str, size_gb: float = 1, *, load: float = 2.0, restore: float | None = None,
          device: str = "gpu") -> SimModel:  # fmt: skip
    return SimModel(
        id=model_id, bytes=int(size_gb * GB), load_seconds=load, restore_seconds=restore,
        unload_seconds=0.0, device=device,
    )  # fmt: skip


def model_set(*models: SimModel, budget_gb: float = 2, warm_gb: float = 0) -> ModelSet:
    return ModelSet("test", models, {"gpu": int(budget_gb * GB)}, int(warm_gb * GB))


def workload(*arrivals: tuple[float, str], service: float = 1.0) -> Workload:
    return Workload("test", tuple(Request(t, m, service=service) for t, m in arrivals))


def replay(wl: Workload, ms: ModelSet, strategy: str = "lru", **options: object):  # type: ignore[no-untyped-def]
    return Simulation(wl, ms, POLICIES.get(strategy)(), **options).run()  # type: ignore[arg-type]


ABC = model_set(model("a"), model("b"), model("c"))
SPARSE = workload((0, "a"), (10, "b"), (20, "a"), (30, "c"), (40, "b"))


def test_lru_replay_matches_the_hand_count() -> None:
    # At 30 s LRU evicts b (used at 10-11 s, a at 20-21 s), so b misses again at 40 s.
    result = replay(SPARSE, ABC)
    assert (result.cold_loads, result.hits, result.unloads) == (4, 1, 2)
    assert result.total_wait == pytest.approx(8.0)
    assert result.p95_wait == pytest.approx(2.0)
    assert result.bytes_moved == 4 * GB


def test_the_bound_evicts_what_is_not_wanted_again() -> None:
    result = Simulation(SPARSE, ABC, FurthestNextUsePolicy(SPARSE, ABC)).run()
    assert (result.cold_loads, result.hits) == (3, 2)
    assert result.total_wait == pytest.approx(6.0)


def test_exclusive_keeps_one_model_at_a_time() -> None:
    wl = workload((0, "a"), (10, "b"), (20, "a"))
    assert replay(wl, ABC).cold_loads == 2
    result = replay(wl, ABC, exclusive=True)
    assert (result.cold_loads, result.unloads) == (3, 2)


def test_requests_that_arrive_during_a_load_share_it() -> None:
    result = replay(workload((0, "a"), (0.5, "a"), (1.5, "a")), ABC)
    assert result.cold_loads == 1
    assert result.total_wait == pytest.approx(2.0 + 1.5 + 0.5)
    assert result.max_wait == pytest.approx(2.0)


def test_a_model_in_use_is_not_evicted_under_the_request_that_needs_room() -> None:
    # a serves until 12 s (load 2 + service 10); c needs a's or b's memory: b goes.
    wl = Workload("busy", (Request(0, "a", service=10), Request(3, "b", service=1),
                           Request(6, "c", service=1), Request(7, "a", service=1)))  # fmt: skip
    result = replay(wl, ABC)
    assert result.hits == 1  # a at 7 s: still resident, in use
    assert result.cold_loads == 3


def test_the_warm_tier_restores_instead_of_loading() -> None:
    ms = model_set(model("a", restore=0.25), model("b", restore=0.25), budget_gb=1, warm_gb=4)
    result = replay(workload((0, "a"), (10, "b"), (20, "a")), ms)
    assert (result.cold_loads, result.warm_restores, result.offloads) == (2, 1, 2)
    # b waits for a to go to host RAM (0.25 s) and its load; a for b's offload and a restore.
    assert result.total_wait == pytest.approx(2.0 + (0.25 + 2.0) + (0.25 + 0.25))
    no_warm = replay(workload((0, "a"), (10, "b"), (20, "a")), ms, warm_budget=0)
    assert (no_warm.cold_loads, no_warm.warm_restores) == (3, 0)


def test_slo_and_rejections_are_counted() -> None:
    ms = model_set(model("a", load=6), model("huge", 5))
    result = replay(workload((0, "a"), (1, "a"), (10, "huge")), ms, slo=5.0)
    assert result.over_slo == 1  # the first waits 6 s, the second 5 s: not over
    assert (result.rejected, result.served) == (1, 2)


def test_a_workload_for_models_the_set_lacks_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"not in set 'test': zz \(the set has a, b, c\)"):
        Simulation(workload((0, "zz")), ABC, POLICIES.get("lru")())


def test_a_replay_is_deterministic() -> None:
    rng = random.Random(7)
    arrivals = sorted((rng.uniform(0, 300), rng.choice("abc")) for _ in range(300))
    wl = workload(*arrivals, service=3.0)
    for strategy in POLICIES.names():
        first, second = replay(wl, ABC, strategy), replay(wl, ABC, strategy)
        assert first.as_dict() | {"wall_seconds": 0} == second.as_dict() | {"wall_seconds": 0}


# --- the exact optimum ------------------------------------------------------------------


def brute_force(wanted: list[str], sizes: dict[str, int], costs: dict[str, float],
                budget: int) -> float:  # fmt: skip
    """Least load cost over every choice of what to keep at every miss."""
    best = float("inf")

    def go(step: int, resident: frozenset[str], paid: float) -> None:
        nonlocal best
        if paid >= best:
            return
        if step == len(wanted):
            best = paid
            return
        m = wanted[step]
        if m in resident:
            go(step + 1, resident, paid)
            return
        others = sorted(resident)
        for n in range(len(others) + 1):
            for kept in itertools.combinations(others, n):
                if sum(sizes[k] for k in kept) + sizes[m] <= budget:
                    go(step + 1, frozenset(kept) | {m}, paid + costs[m])

    go(0, frozenset(), 0.0)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_the_exact_optimum_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    models = [model(name, rng.choice([1, 2, 3]), load=rng.choice([1.0, 3.0, 7.0]))
              for name in "abcde"]  # fmt: skip
    ms = model_set(*models, budget_gb=5)
    wanted = [rng.choice("abcde") for _ in range(10)]
    wl = workload(*((10.0 * i, m) for i, m in enumerate(wanted)))
    optimum = exact_optimum(wl, ms)
    sizes = {m.id: m.bytes for m in models}
    costs = {m.id: m.load_seconds for m in models}
    assert optimum.load_seconds == pytest.approx(brute_force(wanted, sizes, costs, 5 * GB))
    assert optimum.total_wait == pytest.approx(optimum.load_seconds)
    assert optimum.exact


@pytest.mark.parametrize("seed", range(5))
def test_no_strategy_pays_less_than_the_optimum_on_a_sparse_trace(seed: int) -> None:
    # Requests far apart: no queueing, no reordering, so every strategy serves them in
    # arrival order and the optimum is a true lower bound of its load seconds.
    rng = random.Random(seed)
    models = [model(n, rng.choice([1, 2]), load=rng.choice([1.0, 4.0])) for n in "abcdef"]
    ms = model_set(*models, budget_gb=4)
    wl = workload(*((20.0 * i, rng.choice("abcdef")) for i in range(60)))
    optimum = exact_optimum(wl, ms)
    bound = Simulation(wl, ms, FurthestNextUsePolicy(wl, ms)).run()
    for strategy in [*POLICIES.names()]:
        assert replay(wl, ms, strategy).load_seconds >= optimum.load_seconds - 1e-9, strategy
    assert bound.load_seconds >= optimum.load_seconds - 1e-9


def test_the_optimum_prices_a_comeback_as_a_restore_with_a_warm_tier() -> None:
    ms = model_set(model("a", restore=0.5), model("b", restore=0.5), budget_gb=1, warm_gb=2)
    optimum = exact_optimum(workload((0, "a"), (10, "b"), (20, "a")), ms)
    assert (optimum.cold_loads, optimum.warm_restores) == (2, 1)
    assert optimum.load_seconds == pytest.approx(4.5)


def test_the_optimum_says_why_it_cannot_run() -> None:
    ms = ModelSet("auto", (model("a", device="auto"),), {"gpu": GB})
    with pytest.raises(OptimumTooLarge, match="one device per model"):
        exact_optimum(workload((0, "a")), ms)
    many = model_set(*(model(f"m{i}", 0.1) for i in range(17)), budget_gb=1)
    with pytest.raises(OptimumTooLarge, match="17 models on gpu"):
        exact_optimum(workload((0, "m1")), many)


def test_budgets_are_read_per_device() -> None:
    assert parse_budgets(["3GB"], ABC) == {"gpu": 3 * GB}
    assert parse_budgets(["gpu=1GB", "cpu=2GB"], ABC) == {"gpu": GB, "cpu": 2 * GB}
    with pytest.raises(ValueError, match="budget 'lots'"):
        parse_budgets(["lots"], ABC)
    two = ModelSet("two", (model("a"), model("b", device="cpu")), {"gpu": GB, "cpu": GB})
    with pytest.raises(ValueError, match="say which, as DEVICE=SIZE"):
        parse_budgets(["3GB"], two)


def test_a_model_with_slots_queues_and_a_second_copy_takes_the_overflow() -> None:
    from dataclasses import replace

    from modelpool.config.placement import ReplicaSettings

    # Four requests at once for a model of one slot, 10 s each.
    arrivals = [(0.0, "a")] * 4
    one = model_set(replace(model("a"), max_concurrent=1), budget_gb=4)
    two = model_set(
        replace(model("a"), max_concurrent=1, replicas=ReplicaSettings(max=2)), budget_gb=4
    )
    single = Simulation(workload(*arrivals, service=10.0), one, POLICIES.get("lru")())
    single.run()
    # One at a time after the 2 s load: served at 2, 12, 22, 32 s; each takes 10 s more.
    assert sorted(single.latencies_by_model["a"]) == [12.0, 22.0, 32.0, 42.0]
    double = Simulation(workload(*arrivals, service=10.0), two, POLICIES.get("lru")())
    result = double.run()
    assert result.cold_loads == 2  # the second copy was started for the queue
    assert max(double.latencies_by_model["a"]) < 42.0
    assert set(double.latencies_by_model) == {"a"}  # copies count as their model
