"""Replaying a pool's window: the picture it is built from and the table it gives."""

from __future__ import annotations

from modelpool import ModelPool, ModelSpec
from modelpool.core.traffic_window import Arrival, TrafficWindow
from modelpool.sim.replay import picture_of, replay_table, workload_of

GB = 10**9


def small_pool(*ids: str) -> ModelPool:
    # Three 4 GB models, room for two: every strategy must choose whom to evict.
    models = [ModelSpec(id=i, backend="fake", memory=4 * GB, device="cpu") for i in ids]
    return ModelPool(models, budgets={"cpu": "8GB"}, strategy="auto")


def scripted_window() -> list[Arrival]:
    """``a`` often, ``b`` and ``c`` alternating between: whom to keep matters."""
    window = TrafficWindow(span=3600)
    t = 0.0
    for round_ in range(30):
        for model in ("a", "a", "b" if round_ % 2 else "c"):
            window.record(model, t, held=0.5)
            t += 10.0
    return window.arrivals(t)


def test_the_picture_carries_the_pools_budgets_footprints_and_default_costs() -> None:
    pool = small_pool("a", "b", "c")
    picture = picture_of(pool.get_resource_status(), pool.settings)
    assert dict(picture.budgets) == {"cpu": 8 * GB}
    assert [(m.id, m.bytes, m.device) for m in picture.models] == [
        ("a", 4 * GB, "cpu"), ("b", 4 * GB, "cpu"), ("c", 4 * GB, "cpu"),
    ]  # fmt: skip
    # never loaded: priced as a start plus the size read from disk; no warm tier
    assert picture.models[0].load_seconds == 1.5 + 4 * GB / 2e9
    assert picture.models[0].restore_seconds is None


def test_the_workload_starts_at_zero_and_drops_models_the_pool_no_longer_has() -> None:
    arrivals = [Arrival(100.0, "a", 1.0), Arrival(103.0, "gone", 1.0), Arrival(104.0, "b", 2.0)]
    workload = workload_of(arrivals, ["a", "b"])
    assert [(r.time, r.model, r.service) for r in workload.requests] == [
        (0.0, "a", 1.0), (4.0, "b", 2.0),
    ]  # fmt: skip


def test_every_candidate_and_the_current_strategy_are_replayed_best_first() -> None:
    pool = small_pool("a", "b", "c")
    picture = picture_of(pool.get_resource_status(), pool.settings)
    table = replay_table(scripted_window(), picture, ["lru", "fifo"], current="hybrid")
    assert sorted(r.strategy for r in table) == ["fifo", "hybrid", "lru"]
    assert [r.total_wait for r in table] == sorted(r.total_wait for r in table)
    assert all(r.cold_loads >= 3 for r in table)  # each model loaded at least once
    fifo = next(r for r in table if r.strategy == "fifo")
    lru = next(r for r in table if r.strategy == "lru")
    # FIFO evicts a (loaded first) for the alternating model; LRU keeps the busy a.
    assert fifo.total_wait > lru.total_wait


def test_an_empty_window_and_a_one_model_window_replay_nothing() -> None:
    pool = small_pool("a", "b", "c")
    picture = picture_of(pool.get_resource_status(), pool.settings)
    assert replay_table([], picture, [], current="hybrid") == []
    only_a = [Arrival(float(t), "a", 0.1) for t in range(10)]
    assert replay_table(only_a, picture, [], current="hybrid") == []
    one = small_pool("a")
    assert (
        replay_table(only_a, picture_of(one.get_resource_status(), one.settings), [], "hybrid")
        == []
    )


def test_a_pool_with_versions_replays_them_under_their_own_names() -> None:
    # A version's record is "model@v2", which no config may name a model: the replay
    # used to refuse the whole picture, and strategy: auto never compared anything.
    base = ModelSpec(
        id="a", backend="fake", memory=4 * GB, device="cpu", versions={"v2": {"memory": "3GB"}}
    )
    others = [ModelSpec(id=i, backend="fake", memory=4 * GB, device="cpu") for i in "bc"]
    pool = ModelPool([base, *others], budgets={"cpu": "8GB"}, strategy="auto")
    picture = picture_of(pool.get_resource_status(), pool.settings)
    assert "a@v2" in [m.id for m in picture.models]
    window = [*scripted_window(), Arrival(10_000.0, "a@v2", 0.5)]
    table = replay_table(window, picture, ["lru"], current="hybrid")
    assert sorted(r.strategy for r in table) == ["hybrid", "lru"]
