"""The contract every router keeps, run against every registered router.

From ``cluster.routing.Router``: a ranking is a permutation of the replicas given;
``choose`` is its first element; the same seed gives the same answer; the input is
left untouched; no replicas, no choice. And the memory-aware router never puts a
replica below one of a worse rank.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelpool.cluster.routing import (
    ROUTERS,
    DeviceRoom,
    Evictable,
    MemoryAwareRouter,
    ModelAsk,
    ReplicaStats,
    assess,
    eviction_cost,
    is_hot,
)

GB = 10**9
MODELS = ["a", "b", "c", "d"]
per_router = pytest.mark.parametrize("name", sorted(ROUTERS))


@st.composite
def rooms(draw: st.DrawFn) -> DeviceRoom:
    victims = draw(
        st.lists(
            st.builds(
                Evictable,
                st.sampled_from(MODELS),
                st.integers(1, 40).map(lambda g: g * GB),
                st.integers(0, 30).map(float),
                st.integers(0, 900).map(float),
            ),
            max_size=3,
        )
    )
    return DeviceRoom(draw(st.integers(0, 40).map(lambda g: g * GB)), tuple(victims))


@st.composite
def replica_lists(draw: st.DrawFn) -> list[ReplicaStats]:
    count = draw(st.integers(0, 8))
    return [
        ReplicaStats(
            f"r{i}",
            frozenset(draw(st.lists(st.sampled_from(MODELS), max_size=3))),
            frozenset(draw(st.lists(st.sampled_from(MODELS), max_size=2))),
            tuple(draw(st.lists(rooms(), min_size=1, max_size=3))),
            in_flight=draw(st.integers(0, 4)),  # narrow: ties are frequent
            queued=draw(st.integers(0, 2)),
            busy=frozenset(draw(st.lists(st.sampled_from(MODELS), max_size=2))),
            saturated=frozenset(draw(st.lists(st.sampled_from(MODELS), max_size=2))),
            capacity=draw(st.one_of(st.none(), st.integers(1, 6))),
        )
        for i in range(count)
    ]


asks = st.builds(
    ModelAsk, st.sampled_from(MODELS), st.integers(1, 60).map(lambda g: g * GB), st.integers(1, 2)
)
seeds = st.integers(0, 2**32)


@per_router
@given(replicas=replica_lists(), ask=asks, seed=seeds)
def test_a_ranking_is_a_permutation_of_the_replicas(
    name: str, replicas: list[ReplicaStats], ask: ModelAsk, seed: int
) -> None:
    ranking = ROUTERS[name]().rank(ask, replicas, random.Random(seed))
    assert sorted(ranking) == sorted(r.replica_id for r in replicas)


@per_router
@given(replicas=replica_lists(), ask=asks, seed=seeds)
def test_choose_is_the_first_of_the_ranking_and_in_the_input(
    name: str, replicas: list[ReplicaStats], ask: ModelAsk, seed: int
) -> None:
    router = ROUTERS[name]()
    chosen = router.choose(ask, replicas, random.Random(seed))
    ranking = router.rank(ask, replicas, random.Random(seed))
    assert chosen == (ranking[0] if ranking else None)
    assert chosen is None or chosen in {r.replica_id for r in replicas}


@per_router
@given(replicas=replica_lists(), ask=asks, seed=seeds)
def test_deterministic_for_a_seed_and_input_untouched(
    name: str, replicas: list[ReplicaStats], ask: ModelAsk, seed: int
) -> None:
    before = list(replicas)
    first = ROUTERS[name]().rank(ask, replicas, random.Random(seed))
    assert ROUTERS[name]().rank(ask, replicas, random.Random(seed)) == first
    assert replicas == before


@per_router
def test_no_replicas_no_choice(name: str) -> None:
    assert ROUTERS[name]().choose(ModelAsk("a", GB), [], random.Random(0)) is None
    assert ROUTERS[name]().rank(ModelAsk("a", GB), [], random.Random(0)) == []


@pytest.mark.parametrize("name", ["modelpool", "ray_default"])
@given(replicas=replica_lists(), ask=asks, seed=seeds)
def test_prefers_a_replica_where_the_model_is_ready(
    name: str, replicas: list[ReplicaStats], ask: ModelAsk, seed: int
) -> None:
    router = ROUTERS[name]()
    if name == "modelpool":
        router = MemoryAwareRouter(spread=False)  # spreading: the tests below
    chosen = router.choose(ask, replicas, random.Random(seed))
    if any(ask.model_id in r.ready for r in replicas):
        by_id = {r.replica_id: r for r in replicas}
        assert chosen is not None
        assert ask.model_id in by_id[chosen].ready


@given(replicas=replica_lists(), ask=asks, seed=seeds)
def test_a_ready_replica_not_saturated_is_chosen_first(
    replicas: list[ReplicaStats], ask: ModelAsk, seed: int
) -> None:
    chosen = MemoryAwareRouter().choose(ask, replicas, random.Random(seed))
    by_id = {r.replica_id: r for r in replicas}
    open_ = [r for r in replicas if ask.model_id in r.ready and not r.saturated_with(ask.model_id)]
    if open_:
        assert chosen is not None
        assert ask.model_id in by_id[chosen].ready
        assert not by_id[chosen].saturated_with(ask.model_id)


@given(replicas=replica_lists(), ask=asks, seed=seeds)
def test_a_second_load_starts_only_when_every_copy_is_saturated(
    replicas: list[ReplicaStats], ask: ModelAsk, seed: int
) -> None:
    """A cold model (READY nowhere) joins any load of it; a hot one starts another copy
    only when every copy, READY or on its way, is saturated."""
    chosen = MemoryAwareRouter().choose(ask, replicas, random.Random(seed))
    if chosen is None:
        return
    by_id = {r.replica_id: r for r in replicas}
    model = ask.model_id
    holders = [r for r in replicas if model in r.ready or model in r.loading]
    started = model not in by_id[chosen].ready and model not in by_id[chosen].loading
    if not started:
        return
    if is_hot(ask, replicas):
        assert all(r.saturated_with(model) for r in holders)
    else:
        assert not holders


@given(replicas=replica_lists(), ask=asks, seed=seeds)
def test_memory_aware_ranks_never_go_backwards(
    replicas: list[ReplicaStats], ask: ModelAsk, seed: int
) -> None:
    by_id = {r.replica_id: r for r in replicas}
    for router in (MemoryAwareRouter(), MemoryAwareRouter(spread=False)):
        hot = router.spread and is_hot(ask, replicas)
        ranking = router.rank(ask, replicas, random.Random(seed))
        verdicts = [assess(by_id[i], ask, hot=hot) for i in ranking]
        keys = [(v.rank, v.cost) for v in verdicts]
        assert keys == sorted(keys)


@given(room=rooms(), ask=asks)
def test_an_eviction_costs_no_more_than_any_one_victim_that_frees_enough(
    room: DeviceRoom, ask: ModelAsk
) -> None:
    cost = eviction_cost([room], dataclasses.replace(ask, devices=1))
    short = ask.bytes - room.free
    enough = [v.cost for v in room.evictable if v.bytes >= short]
    if enough:
        assert cost is not None
        assert cost <= min(enough) + 1e-9
    if cost is not None:
        assert cost <= sum(v.cost for v in room.evictable) + 1e-9
