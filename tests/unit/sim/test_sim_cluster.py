"""The cluster simulator: nodes running the real scheduler, a router in front."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelpool.cluster.routing import MemoryAwareRouter, RandomRouter, RayDefaultRouter
from modelpool.plugins import POLICIES
from modelpool.sim.cluster import (
    NO_SPREAD,
    ClusterSetup,
    ClusterSimulation,
    ray_models_per_node,
    ray_safe_models_per_node,
    setups,
)
from modelpool.sim.cluster_set import cluster_azure, cluster_hot, cluster_model_set, cluster_zipf
from modelpool.sim.engine import Simulation
from modelpool.sim.models import ModelSet, SimModel
from modelpool.sim.workload import Request, Workload

GB = 1000**3


def model(model_id: str, size_gb: float = 1, load: float = 2.0) -> SimModel:
    return SimModel(model_id, int(size_gb * GB), load, unload_seconds=0.0, device="auto")


def two_gpus(*models: SimModel) -> ModelSet:
    return ModelSet("test", models, {"cuda:0": 2 * GB, "cuda:1": 2 * GB})


def workload(*arrivals: tuple[float, str], service: float = 1.0) -> Workload:
    return Workload("test", tuple(Request(t, m, service=service) for t, m in arrivals))


def run(wl: Workload, ms: ModelSet, setup: ClusterSetup, nodes: int = 2):  # type: ignore[no-untyped-def]
    return ClusterSimulation(wl, ms, setup, nodes=nodes).run()


OURS = ClusterSetup("modelpool", MemoryAwareRouter())
RAY = ClusterSetup("ray_default", RayDefaultRouter(), "lru", 1)


def test_a_burst_for_a_cold_model_is_one_load_with_our_router() -> None:
    """The burst arrives while the first load runs: ours joins it, Ray's default
    cannot see it and starts another on the other node (a stampede)."""
    ms = two_gpus(model("a", load=5.0))
    burst = workload(*((0.1 * i, "a") for i in range(10)))
    ours = run(burst, ms, OURS)
    assert ours.cold_loads == 1
    assert ours.total_wait == pytest.approx(sum(5.0 - 0.1 * i for i in range(10)))
    ray = run(burst, ms, RAY)
    assert ray.cold_loads == 2


def test_a_hot_model_spreads_to_nodes_where_it_fits_instead_of_queueing() -> None:
    """One slot per copy (``max_concurrent: 1``), 10 s a request, a load 2 s: each
    request that would queue behind the busy copy starts a copy on another node while
    one has room; without spreading they queue on the first node, one after another."""
    hot = SimModel("a", GB, 2.0, unload_seconds=0.0, device="auto", max_concurrent=1)
    ms = two_gpus(hot)
    wl = workload((0.0, "a"), (3.0, "a"), (4.0, "a"), (5.0, "a"), service=10.0)
    spread = ClusterSimulation(wl, ms, OURS, nodes=3)
    result = spread.run()
    assert result.cold_loads == 3  # one per node; the fourth queues where it is soonest free
    waits = spread.waits_by_model["a"]
    assert waits[:3] == pytest.approx([2.0, 2.0, 2.0])
    assert 7.0 <= waits[3] <= 11.0
    kept = ClusterSimulation(wl, ms, NO_SPREAD, nodes=3)
    alone = kept.run()
    assert alone.cold_loads == 1
    assert sorted(kept.waits_by_model["a"]) == pytest.approx([2.0, 9.0, 18.0, 27.0])
    assert spread.p95_wait_of(["a"]) < kept.p95_wait_of(["a"])


def test_a_burst_for_a_cold_model_is_one_load_even_with_slots() -> None:
    """Spreading is for a model READY somewhere: a cold model's burst joins one load,
    however many wait for it."""
    hot = SimModel("a", GB, 5.0, unload_seconds=0.0, device="auto", max_concurrent=1)
    burst = workload(*((0.1 * i, "a") for i in range(10)), service=0.1)
    assert run(burst, two_gpus(hot), OURS, nodes=3).cold_loads == 1


def test_the_hot_workload_puts_its_share_on_llms_with_slots() -> None:
    models = cluster_model_set(100, max_concurrent=4)
    wl = cluster_hot(models, requests=4000, hot=2, share=0.25, duration=600.0)
    hot = wl.params["hot"]
    assert len(hot) == 2
    assert all(models[m].max_concurrent == 4 for m in hot)
    on_hot = sum(r.model in hot for r in wl.requests)
    assert len(wl.requests) == 4000
    assert on_hot >= 1000
    assert all(a.time <= b.time for a, b in zip(wl.requests, wl.requests[1:], strict=False))
    assert sum(m.max_concurrent == 4 for m in models.models) < len(models.models)  # LLMs only
    with pytest.raises(ValueError, match="share"):
        cluster_hot(models, requests=10, share=1.0)


def test_models_that_do_not_fit_together_go_to_different_nodes() -> None:
    ms = ModelSet("big", (model("a", 2), model("b", 2)), {"cuda:0": 2 * GB})
    alternating = workload(*((10.0 * i, "ab"[i % 2]) for i in range(10)))
    ours = run(alternating, ms, OURS)
    assert ours.cold_loads == 2  # one on each node, then hits only
    assert ours.hits == 8
    scattered = run(alternating, ms, ClusterSetup("random", RandomRouter()))
    assert scattered.cold_loads > 2


def test_one_node_is_the_one_box_simulator() -> None:
    """With one node and a router that has one choice, the cluster replays exactly
    what ``Simulation`` replays: the same scheduler, the same effects."""
    ms = two_gpus(model("a"), model("b"), model("c", 2), model("d"))
    wl = workload(*((3.0 * i, "abcdcab"[i % 7]) for i in range(40)), service=2.5)
    box = Simulation(wl, ms, POLICIES.get("hybrid")(), warm_budget=0).run()
    cluster = run(wl, ms, OURS, nodes=1)
    assert (cluster.cold_loads, cluster.hits, cluster.unloads) == (
        box.cold_loads, box.hits, box.unloads,
    )  # fmt: skip
    assert cluster.total_wait == pytest.approx(box.total_wait)


def test_rays_count_cap_evicts_what_would_have_fitted() -> None:
    ms = two_gpus(model("a"), model("b"))
    alternating = workload(*((10.0 * i, "ab"[i % 2]) for i in range(6)))
    assert run(alternating, ms, RAY, nodes=1).cold_loads == 6  # cap 1: every switch loads
    assert run(alternating, ms, OURS, nodes=1).cold_loads == 2


def test_every_request_is_served_once_and_same_seed_same_result() -> None:
    models = cluster_model_set(60, seed=1)
    wl = cluster_zipf(models, requests=400, seed=2, duration=600.0)
    for setup in setups(ray_models_per_node(models)).values():
        first = ClusterSimulation(wl, models, setup, nodes=4, seed=3).run()
        again = ClusterSimulation(wl, models, setup, nodes=4, seed=3).run()
        assert first.served + first.rejected == len(wl.requests)
        assert (first.total_wait, first.cold_loads) == (again.total_wait, again.cold_loads)


def test_the_cluster_set_and_the_scaled_azure_trace() -> None:
    models = cluster_model_set(1000)
    assert len(models.models) == 1000
    assert len({m.bytes for m in models.models}) == 16  # the box set's sixteen kinds
    wl = cluster_azure(models, copies=2, sessions=64)
    assert len(wl.requests) == 2 * 19366
    assert all(a.time <= b.time for a, b in zip(wl.requests, wl.requests[1:], strict=False))
    assert len(wl.models()) > 100


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        ClusterSimulation(workload((0, "a")), two_gpus(model("a")), OURS, nodes=0)
    with pytest.raises(ValueError, match="not in set"):
        ClusterSimulation(workload((0, "z")), two_gpus(model("a")), OURS, nodes=1)


def test_rays_node_loads_one_at_a_time_and_counts_what_would_not_fit() -> None:
    ms = ModelSet("r", (model("a", 1.5, load=4.0), model("b", 1.5, load=4.0)), {"cuda:0": 2 * GB})
    both = workload((0.0, "a"), (0.0, "b"))
    simulation = ClusterSimulation(both, ms, ClusterSetup("ray", RayDefaultRouter(), "lru", 5),
                                   nodes=1)  # fmt: skip
    result = simulation.run()
    assert result.total_wait == pytest.approx(4.0 + 8.0)  # b waits for a's load, then its own
    assert simulation.over_memory == 1  # a count of 5 allowed both; 2 GB did not
    assert result.unloads == 1


def test_the_safe_ray_cap_never_holds_more_than_fits() -> None:
    models = cluster_model_set(100)
    wl = cluster_zipf(models, requests=2000, duration=600.0)
    safe = setups(ray_models_per_node(models), ray_safe_models_per_node(models))
    simulation = ClusterSimulation(wl, models, safe["ray_default_safe"], nodes=5)
    simulation.run()
    assert simulation.over_memory == 0


@given(
    arrivals=st.lists(
        st.tuples(st.floats(0, 60, allow_nan=False), st.sampled_from("abcde")),
        min_size=1,
        max_size=40,
    ),
    seed=st.integers(0, 2**16),
)
def test_with_room_enough_our_router_loads_each_model_once(
    arrivals: list[tuple[float, str]], seed: int
) -> None:
    """However requests interleave with loads, ours never loads a model on a second
    node while it is ready or loading on one: one cold load per model wanted."""
    ms = two_gpus(*(model(m, 0.5, load=3.0) for m in "abcde"))
    wl = workload(*sorted(arrivals), service=2.0)
    result = ClusterSimulation(wl, ms, OURS, nodes=3, seed=seed).run()
    assert result.cold_loads == len(wl.models())
    assert result.served == len(arrivals)
