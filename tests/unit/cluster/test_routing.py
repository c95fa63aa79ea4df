"""Router decisions as pure functions: replica stats in, ranking out."""

from __future__ import annotations

import random

import pytest

from modelpool.cluster.routing import (
    DeviceRoom,
    Evictable,
    MemoryAwareRouter,
    ModelAsk,
    RandomRouter,
    Rank,
    RayDefaultRouter,
    ReplicaStats,
    assess,
    eviction_cost,
    two_choices,
)
from modelpool.reuse import reuse_chance

GB = 10**9
ASK = ModelAsk("m", 10 * GB)


def replica(
    name: str,
    *,
    ready: tuple[str, ...] = (),
    loading: tuple[str, ...] = (),
    free: tuple[int, ...] = (0,),
    evictable: tuple[Evictable, ...] = (),
    in_flight: int = 0,
    queued: int = 0,
) -> ReplicaStats:
    devices = tuple(DeviceRoom(f, evictable if i == 0 else ()) for i, f in enumerate(free))
    return ReplicaStats(
        name, frozenset(ready), frozenset(loading), devices, in_flight=in_flight, queued=queued
    )


def idle(model_id: str, size_gb: float, seconds: float) -> Evictable:
    return Evictable(model_id, int(size_gb * GB), seconds)


def test_ready_beats_loading_beats_fits_beats_evicts() -> None:
    replicas = [
        replica("evicts", evictable=(idle("x", 12, 3.0),)),
        replica("fits", free=(11 * GB,)),
        replica("loading", loading=("m",)),
        replica("ready", ready=("m",), in_flight=50),
    ]
    ranking = MemoryAwareRouter().rank(ASK, replicas, random.Random(0))
    assert ranking == ["ready", "loading", "fits", "evicts"]


def test_a_load_in_progress_is_joined_not_started_again() -> None:
    """Ray's default cannot see a load in progress and sends the burst elsewhere."""
    replicas = [replica("loading", loading=("m",), in_flight=9)] + [
        replica(f"empty{i}", free=(80 * GB,)) for i in range(5)
    ]
    for seed in range(20):
        assert MemoryAwareRouter().choose(ASK, replicas, random.Random(seed)) == "loading"
    picks = {RayDefaultRouter().choose(ASK, replicas, random.Random(s)) for s in range(20)}
    assert "loading" not in picks


def test_least_eviction_cost_first() -> None:
    replicas = [
        replica("dear", evictable=(idle("big", 12, 30.0),)),
        replica("cheap", evictable=(idle("a", 6, 2.0), idle("b", 6, 2.0))),
        replica("never", free=(1 * GB,)),
    ]
    ranking = MemoryAwareRouter().rank(ASK, replicas, random.Random(0))
    assert ranking == ["cheap", "dear", "never"]
    assert [assess(r, ASK).rank for r in replicas] == [Rank.EVICTS, Rank.EVICTS, Rank.NO_ROOM]


def test_a_model_idle_long_is_cheaper_to_evict_than_one_just_used() -> None:
    """What the pool's own policies will evict is what sat idle: the router weighs each
    victim's reload by the chance it is wanted again soon."""
    just_used = Evictable("busy-lately", 12 * GB, 10.0, idle_seconds=1.0)
    long_idle = Evictable("forgotten", 12 * GB, 10.0, idle_seconds=3600.0)
    replicas = [replica("recent", evictable=(just_used,)), replica("stale", evictable=(long_idle,))]
    assert MemoryAwareRouter().rank(ASK, replicas, random.Random(0)) == ["stale", "recent"]
    assert just_used.cost == pytest.approx(10.0)
    assert long_idle.cost == pytest.approx(10.0 * reuse_chance(3600.0))
    # On one device, the idle large model goes before the recently used small one.
    small_recent = Evictable("s", 6 * GB, 1.0, idle_seconds=0.0)
    room = DeviceRoom(0, (small_recent, Evictable("l", 12 * GB, 4.0, idle_seconds=3600.0)))
    assert eviction_cost([room], ModelAsk("m", 6 * GB)) == pytest.approx(4.0 * reuse_chance(3600))


def test_reuse_chance_falls_with_idle_time() -> None:
    assert reuse_chance(0.0) == 1.0
    assert reuse_chance(1.0) == pytest.approx(1.0)
    assert reuse_chance(600.0) == pytest.approx(0.095, abs=0.001)
    chances = [reuse_chance(t) for t in (1, 10, 60, 600, 6000)]
    assert chances == sorted(chances, reverse=True)


def test_eviction_cost_counts_free_bytes_and_takes_cheapest_per_byte() -> None:
    room = DeviceRoom(4 * GB, (idle("dear", 6, 60.0), idle("cheap", 6, 1.0)))
    assert eviction_cost([room], ASK) == 1.0  # 4 free + 6 of the cheap one
    assert eviction_cost([DeviceRoom(10 * GB)], ASK) == 0.0
    assert eviction_cost([DeviceRoom(1 * GB, (idle("a", 2, 1.0),))], ASK) is None


def test_a_spread_model_needs_its_share_on_that_many_devices() -> None:
    ask = ModelAsk("big", 40 * GB, devices=2)
    two = replica("two", free=(20 * GB, 20 * GB))
    one = replica("one", free=(40 * GB, 0))
    assert assess(two, ask).rank is Rank.FITS
    assert assess(one, ask).rank is Rank.NO_ROOM
    cost = eviction_cost((DeviceRoom(20 * GB), DeviceRoom(10 * GB, (idle("a", 10, 2.0),))), ask)
    assert cost == 2.0


def test_within_a_rank_two_choices_prefer_the_less_loaded() -> None:
    busy = replica("busy", ready=("m",), in_flight=5)
    calm = replica("calm", ready=("m",), in_flight=1, queued=1)
    for seed in range(10):
        assert MemoryAwareRouter().choose(ASK, [busy, calm], random.Random(seed)) == "calm"
        assert RayDefaultRouter().choose(ASK, [busy, calm], random.Random(seed)) == "calm"


def test_two_choices_draws_two_of_many() -> None:
    group = [replica(f"r{i}", in_flight=i) for i in range(10)]
    seen = set()
    for seed in range(200):
        pair = two_choices(group, random.Random(seed))
        assert len(pair) == 2
        assert pair[0].load <= pair[1].load
        seen.add(pair[0].replica_id)
    assert "r9" not in seen  # the most loaded never wins a pair
    assert len(seen) > 5  # ...but the least loaded does not always take it


def test_ray_default_prefers_holders_then_fewest_models_ignoring_memory() -> None:
    replicas = [
        replica("roomy", ready=("a", "b"), free=(80 * GB,)),
        replica("full", ready=("c",), free=(0,)),
        replica("holder", ready=("m", "x", "y"), in_flight=100),
    ]
    assert RayDefaultRouter().rank(ASK, replicas, random.Random(0)) == ["holder", "full", "roomy"]
    no_holder = replicas[:2]
    assert RayDefaultRouter().choose(ASK, no_holder, random.Random(0)) == "full"


def test_random_is_a_permutation() -> None:
    replicas = [replica(f"r{i}") for i in range(6)]
    ranking = RandomRouter().rank(ASK, replicas, random.Random(3))
    assert sorted(ranking) == [r.replica_id for r in replicas]


def test_replica_ids_given_twice_are_refused() -> None:
    with pytest.raises(ValueError, match="r1 given twice"):
        MemoryAwareRouter().rank(ASK, [replica("r1"), replica("r1")], random.Random(0))


def test_a_model_serving_requests_is_not_counted_as_evictable() -> None:
    room = (DeviceRoom(0, (idle("cheap", 12, 1.0), idle("dear", 12, 9.0))),)
    assert eviction_cost(room, ASK) == 1.0
    assert eviction_cost(room, ASK, busy=frozenset({"cheap"})) == 9.0
    assert eviction_cost(room, ASK, busy=frozenset({"cheap", "dear"})) is None
    serving = ReplicaStats("r", devices=room, busy=frozenset({"cheap", "dear"}))
    assert assess(serving, ASK).rank is Rank.NO_ROOM


# --- a hot model spreads (the one-box replica rules, cluster-wide) -----------------


def saturated(name: str, **kw: object) -> ReplicaStats:
    """``replica(...)`` with ``m`` saturated there."""
    stats = replica(name, **kw)  # type: ignore[arg-type]
    return ReplicaStats(
        stats.replica_id, stats.ready, stats.loading, stats.devices,
        in_flight=stats.in_flight, queued=stats.queued, saturated=frozenset({"m"}),
    )  # fmt: skip


def test_a_saturated_hot_model_goes_where_it_fits_then_where_eviction_is_cheapest() -> None:
    replicas = [
        saturated("holder", ready=("m",), in_flight=4),
        replica("evicts", evictable=(idle("x", 12, 3.0),)),
        replica("fits", free=(11 * GB,)),
        replica("never"),
    ]
    for seed in range(10):
        ranking = MemoryAwareRouter().rank(ASK, replicas, random.Random(seed))
        assert ranking == ["fits", "evicts", "holder", "never"]
        assert MemoryAwareRouter().choose(ASK, replicas, random.Random(seed)) == "fits"
        # Without spreading it stays where it is READY, however busy.
        assert MemoryAwareRouter(spread=False).choose(ASK, replicas, random.Random(seed)) == (
            "holder"
        )
    assert assess(replicas[0], ASK, hot=True).rank is Rank.SATURATED
    assert assess(replicas[0], ASK).rank is Rank.READY


def test_a_ready_copy_with_room_beats_a_new_one() -> None:
    replicas = [
        saturated("full", ready=("m",), in_flight=4),
        replica("open", ready=("m",), in_flight=7),
        replica("fits", free=(80 * GB,)),
    ]
    for seed in range(10):
        assert MemoryAwareRouter().choose(ASK, replicas, random.Random(seed)) == "open"


def test_a_replica_at_max_ongoing_requests_saturates_every_model_there() -> None:
    at_cap = ReplicaStats("capped", frozenset({"m"}), in_flight=3, queued=2, capacity=5)
    below = ReplicaStats("below", frozenset({"m"}), in_flight=3, capacity=5)
    assert at_cap.saturated_with("m")
    assert not below.saturated_with("m")
    fits = replica("fits", free=(80 * GB,))
    assert MemoryAwareRouter().choose(ASK, [at_cap, fits], random.Random(0)) == "fits"
    assert MemoryAwareRouter().choose(ASK, [below, fits], random.Random(0)) == "below"


def test_a_hot_models_second_copy_is_joined_until_it_is_saturated_too() -> None:
    holder = saturated("holder", ready=("m",), in_flight=4)
    fits = replica("fits", free=(80 * GB,))
    on_its_way = replica("second", loading=("m",), queued=1)
    for seed in range(10):
        rng = random.Random(seed)
        assert MemoryAwareRouter().choose(ASK, [holder, on_its_way, fits], rng) == "second"
    swamped = saturated("second", loading=("m",), queued=4)
    assert MemoryAwareRouter().choose(ASK, [holder, swamped, fits], random.Random(0)) == "fits"


def test_a_cold_model_joins_its_one_load_even_when_saturated() -> None:
    """READY nowhere: the burst is one load, however many wait for it (issue 18)."""
    swamped = saturated("loading", loading=("m",), queued=40)
    fits = replica("fits", free=(80 * GB,))
    for seed in range(10):
        assert MemoryAwareRouter().choose(ASK, [swamped, fits], random.Random(seed)) == "loading"
        assert MemoryAwareRouter().rank(ASK, [swamped, fits], random.Random(seed))[0] == "loading"
    assert assess(swamped, ASK).rank is Rank.LOADING


def test_with_no_room_anywhere_a_hot_model_queues_where_it_is() -> None:
    replicas = [saturated("holder", ready=("m",), in_flight=4), replica("never")]
    assert MemoryAwareRouter().rank(ASK, replicas, random.Random(0)) == ["holder", "never"]
