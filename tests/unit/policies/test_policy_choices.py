"""Small hand-made scenarios: each policy evicts what its rule says, in that order.

Each scenario is built so that a different rule (usually plain LRU) would answer
differently, so a policy that ignored its own rule would fail it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from modelpool.core.ports import Candidate, EvictionContext, EvictionPolicy
from modelpool.policies import (
    CostAwarePolicy,
    FIFOPolicy,
    HybridPolicy,
    LFUPolicy,
    LRUPolicy,
    MemoryPressurePolicy,
    PriorityPolicy,
    RecencyCostPolicy,
    SpecializationPolicy,
    evict_in_order,
    specialization_score,
)

GB = 10**9
NOW = 100.0


def model(model_id: str, **stats: Any) -> Candidate:
    stats.setdefault("bytes", GB)
    return Candidate(model_id=model_id, **stats)


def order(
    policy: EvictionPolicy, candidates: list[Candidate], demand: dict[str, float] | None = None
) -> list[str]:
    """The policy's full eviction order (need more than everything)."""
    need = sum(c.bytes for c in candidates) + 1
    return policy.victims(candidates, EvictionContext(need=need, now=NOW, demand=demand or {}))


def first(policy: EvictionPolicy, candidates: list[Candidate], need: int = 1) -> list[str]:
    return policy.victims(candidates, EvictionContext(need=need, now=NOW))


# --- lru, lfu, fifo -----------------------------------------------------------------


def test_lru_evicts_the_idlest_first() -> None:
    candidates = [
        model("recent", last_used=90.0, loaded_at=1.0),
        model("idlest", last_used=10.0, loaded_at=3.0),
        model("middle", last_used=50.0, loaded_at=2.0),
    ]
    assert first(LRUPolicy(), candidates) == ["idlest"]
    assert first(LRUPolicy(), candidates, need=2 * GB) == ["idlest", "middle"]
    assert order(LRUPolicy(), candidates) == ["idlest", "middle", "recent"]


def test_lru_breaks_ties_by_model_id() -> None:
    candidates = [model("b", last_used=5.0), model("c", last_used=5.0), model("a", last_used=5.0)]
    assert order(LRUPolicy(), candidates) == ["a", "b", "c"]


def test_lfu_evicts_the_least_used_first_then_the_older() -> None:
    candidates = [
        model("popular", use_count=9, last_used=1.0),
        model("rare-recent", use_count=1, last_used=80.0),
        model("rare-old", use_count=1, last_used=20.0),
        model("some", use_count=5, last_used=2.0),
    ]
    assert order(LFUPolicy(), candidates) == ["rare-old", "rare-recent", "some", "popular"]


def test_fifo_evicts_the_first_loaded_whatever_its_use() -> None:
    candidates = [
        model("newest", loaded_at=30.0, last_used=1.0, use_count=0),
        model("oldest", loaded_at=10.0, last_used=99.0, use_count=100),
        model("middle", loaded_at=20.0, last_used=50.0),
    ]
    assert order(FIFOPolicy(), candidates) == ["oldest", "middle", "newest"]


# --- priority -----------------------------------------------------------------------


def test_priority_evicts_background_work_before_critical() -> None:
    candidates = [
        model("critical", priority=1, last_used=0.0),
        model("background", priority=9, last_used=99.0),
        model("normal", priority=5, last_used=50.0),
    ]
    assert first(PriorityPolicy(), candidates) == ["background"]
    assert order(PriorityPolicy(), candidates) == ["background", "normal", "critical"]


def test_priority_ties_go_to_lru() -> None:
    candidates = [model("recent", priority=5, last_used=90.0), model("idle", priority=5)]
    assert order(PriorityPolicy(), candidates) == ["idle", "recent"]


# --- specialization -----------------------------------------------------------------


def test_specialization_score_values() -> None:
    assert specialization_score(("code",), "code") == 1.0
    assert specialization_score(("code", "general"), "code") == 1.0
    assert specialization_score(("general",), "code") == 0.7
    assert specialization_score(("chat",), "code") == 0.3
    assert specialization_score((), "code") == 0.3


def test_specialization_keeps_the_model_made_for_current_demand() -> None:
    candidates = [
        model("coder", tags=("code",), last_used=0.0),  # idlest: LRU would evict it first
        model("generalist", tags=("general",), last_used=60.0),
        model("chatter", tags=("chat",), last_used=90.0),
    ]
    demand = {"code": 1.0}
    assert order(SpecializationPolicy(), candidates, demand) == ["chatter", "generalist", "coder"]


def test_specialization_weighs_demand_and_ties_go_to_lru() -> None:
    candidates = [
        model("generalist", tags=("general",), last_used=0.0),  # 0.7
        model("coder", tags=("code",), last_used=50.0),  # 0.5 + 0.3 * 0.5 = 0.65
        model("chatter", tags=("chat",), last_used=40.0),  # 0.65, idler than coder
        model("embedder", tags=("embedding",), last_used=99.0),  # 0.3
    ]
    demand = {"code": 0.5, "chat": 0.5}
    assert order(SpecializationPolicy(), candidates, demand) == [
        "embedder",
        "chatter",
        "coder",
        "generalist",
    ]


def test_specialization_counts_a_repeated_tag_once() -> None:
    candidates = [
        model("twice", tags=("chat", "chat"), last_used=0.0),
        model("once", tags=("chat",), last_used=90.0),
    ]
    # Same score (0.3 + 0.7 * 0.6), so LRU decides; counted twice, "twice" would stay.
    demand = {"chat": 0.6, "code": 0.4}
    assert order(SpecializationPolicy(), candidates, demand) == ["twice", "once"]


def test_specialization_without_demand_is_lru() -> None:
    candidates = [
        model("coder", tags=("code",), last_used=10.0),
        model("chatter", tags=("chat",), last_used=90.0),
        model("generalist", tags=("general",), last_used=50.0),
    ]
    assert order(SpecializationPolicy(), candidates) == ["coder", "generalist", "chatter"]


# --- memory pressure ----------------------------------------------------------------


def test_memory_pressure_frees_one_big_model_instead_of_three_small() -> None:
    candidates = [
        model("small-1", bytes=3 * GB, last_used=1.0),
        model("small-2", bytes=3 * GB, last_used=2.0),
        model("small-3", bytes=3 * GB, last_used=3.0),
        model("big", bytes=8 * GB, last_used=99.0),
    ]
    assert first(MemoryPressurePolicy(), candidates, need=8 * GB) == ["big"]
    assert first(LRUPolicy(), candidates, need=8 * GB) == ["small-1", "small-2", "small-3"]


def test_memory_pressure_ties_go_to_lru() -> None:
    candidates = [model("recent", last_used=90.0), model("idle", last_used=10.0)]
    assert order(MemoryPressurePolicy(), candidates) == ["idle", "recent"]


# --- hybrid -------------------------------------------------------------------------


def test_hybrid_evicts_an_idle_rarely_used_model_and_keeps_a_busy_one() -> None:
    candidates = [
        model("busy", last_used=NOW, load_count=5, current_tasks=3),
        model("idle-rare", last_used=0.0, load_count=0, current_tasks=0),
    ]
    # With the seed's code signs (+loads, +tasks) "busy" would score 0.6 > 0.3 and go.
    assert first(HybridPolicy(), candidates) == ["idle-rare"]


def test_hybrid_keeps_the_model_reloaded_more_often() -> None:
    candidates = [
        model("reloaded", last_used=50.0, load_count=10),
        model("loaded-once", last_used=50.0, load_count=1),
    ]
    assert order(HybridPolicy(), candidates) == ["loaded-once", "reloaded"]


def test_hybrid_scores_follow_the_formula() -> None:
    candidates = [
        model("a", last_used=0.0, load_count=2, current_tasks=0, error_count=4),
        model("b", last_used=50.0, load_count=4, current_tasks=2, error_count=0),
    ]
    scores = HybridPolicy().scores(candidates, now=NOW)
    # a: 0.3 * 100/100 + 0.2 * (1 - 2/4) + 0.4 * (1 - 0/2) + 0.1 * 4/4
    assert scores["a"] == pytest.approx(0.3 + 0.1 + 0.4 + 0.1)
    # b: 0.3 * 50/100 + 0.2 * (1 - 4/4) + 0.4 * (1 - 2/2) + 0.1 * 0/4
    assert scores["b"] == pytest.approx(0.15)


def test_hybrid_factors_with_zero_maximum_contribute_nothing() -> None:
    candidates = [model("a", last_used=NOW), model("b", last_used=NOW)]
    scores = HybridPolicy().scores(candidates, now=NOW)
    assert scores == {"a": pytest.approx(0.6), "b": pytest.approx(0.6)}


def test_hybrid_custom_weights_errors_only_evicts_the_erroring_model() -> None:
    candidates = [
        model("flaky", last_used=NOW, load_count=9, current_tasks=2, error_count=3),
        model("steady-idle", last_used=0.0),
        model("steady", last_used=50.0),
    ]
    policy = HybridPolicy(weights={"idle": 0, "loads": 0, "tasks": 0, "errors": 1})
    assert first(policy, candidates) == ["flaky"]
    assert first(HybridPolicy(), candidates) == ["steady-idle"]


def test_hybrid_ties_go_to_lru() -> None:
    candidates = [model("recent", last_used=90.0), model("idle", last_used=10.0)]
    policy = HybridPolicy(weights={"idle": 0})  # idle time out of the score: a tie
    assert order(policy, candidates) == ["idle", "recent"]


def test_hybrid_partial_weights_override_the_defaults() -> None:
    assert HybridPolicy().weights == {"idle": 0.3, "loads": 0.2, "tasks": 0.4, "errors": 0.1}
    policy = HybridPolicy(weights={"errors": 1})
    assert policy.weights == {"idle": 0.3, "loads": 0.2, "tasks": 0.4, "errors": 1.0}
    assert "errors" in repr(policy)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"latency": 0.5}, "unknown factor 'latency'"),
        ({"idle": -0.1}, "'idle' must be finite and >= 0"),
        ({"tasks": math.nan}, "'tasks' must be finite"),
        ({"loads": math.inf}, "'loads' must be finite"),
        ({"errors": "high"}, "'errors' must be a number"),
        ({"idle": True}, "'idle' must be a number"),
        ({"idle": 0, "loads": 0, "tasks": 0, "errors": 0}, "all are zero"),
    ],
)
def test_hybrid_bad_weights_raise(weights: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HybridPolicy(weights=weights)


# --- cost aware ---------------------------------------------------------------------


def test_cost_aware_keeps_a_slow_small_model_over_a_fast_big_one() -> None:
    candidates = [
        model("slow-small", bytes=2 * GB, load_seconds=60.0, frequency=1.0, last_used=0.0),
        model("fast-big", bytes=8 * GB, load_seconds=5.0, frequency=1.0, last_used=99.0),
    ]
    assert first(CostAwarePolicy(), candidates) == ["fast-big"]


def test_cost_aware_keeps_the_more_wanted_of_two_equal_models() -> None:
    candidates = [
        model("wanted", load_seconds=10.0, frequency=5.0, last_used=0.0),
        model("unwanted", load_seconds=10.0, frequency=0.5, last_used=99.0),
    ]
    assert order(CostAwarePolicy(), candidates) == ["unwanted", "wanted"]


def test_cost_aware_unmeasured_models_are_not_free_to_evict() -> None:
    candidates = [
        model("unmeasured", load_seconds=0.0, frequency=10.0, last_used=0.0),
        model("measured", load_seconds=0.002, frequency=1.0, last_used=99.0),
    ]
    # floored: 10 * 0.001 = 0.01 > 1 * 0.002; without the floor "unmeasured" is worth 0.
    assert first(CostAwarePolicy(), candidates) == ["measured"]
    assert first(CostAwarePolicy(min_load_seconds=0), candidates) == ["unmeasured"]


def test_cost_aware_ties_go_to_lru_and_zero_bytes_do_not_divide_by_zero() -> None:
    candidates = [
        model("empty", bytes=0, load_seconds=1.0, frequency=0.0, last_used=50.0),
        model("idle", load_seconds=1.0, frequency=0.0, last_used=10.0),
        model("empty-used", bytes=0, load_seconds=1.0, frequency=1.0, last_used=0.0),
    ]
    assert order(CostAwarePolicy(), candidates) == ["idle", "empty", "empty-used"]


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "1s"])
def test_cost_aware_bad_min_load_seconds_raises(bad: Any) -> None:
    with pytest.raises(ValueError, match="min_load_seconds"):
        CostAwarePolicy(min_load_seconds=bad)


# --- recency cost -------------------------------------------------------------------


def test_recency_cost_evicts_the_forgotten_before_the_recently_used() -> None:
    # LFU and cost_aware keep "forgotten" (it served far more); recency says it is done.
    candidates = [
        model("forgotten", load_seconds=10.0, frequency=50.0, use_count=500, last_used=-3500.0),
        model("recent", load_seconds=10.0, frequency=1.0, use_count=1, last_used=95.0),
    ]
    assert first(RecencyCostPolicy(), candidates) == ["forgotten"]
    assert first(CostAwarePolicy(), candidates) == ["recent"]


def test_recency_cost_weighs_reload_seconds_per_byte() -> None:
    # Idle alike: the big one that reloads fast frees the most room for what it costs,
    # where LRU would take the slightly idler small one (and seconds x bytes, too).
    candidates = [
        model("slow-small", bytes=2 * GB, load_seconds=12.0, last_used=9.0),
        model("fast-big", bytes=8 * GB, load_seconds=5.0, last_used=10.0),
    ]
    assert first(RecencyCostPolicy(), candidates) == ["fast-big"]
    assert first(LRUPolicy(), candidates) == ["slow-small"]


def test_recency_cost_drains_busy_models_least_recently_used_first() -> None:
    # Only a starving load is offered busy models; the value would pick "big-busy".
    candidates = [
        model("big-busy", bytes=8 * GB, load_seconds=5.0, current_tasks=3, last_used=99.0),
        model("old-busy", bytes=2 * GB, load_seconds=30.0, current_tasks=1, last_used=40.0),
        model("idle", bytes=2 * GB, load_seconds=30.0, last_used=99.0),
    ]
    assert order(RecencyCostPolicy(), candidates) == ["idle", "old-busy", "big-busy"]


def test_recency_cost_unmeasured_models_are_not_free_to_evict() -> None:
    candidates = [
        model("unmeasured", load_seconds=0.0, last_used=99.0),
        model("measured", load_seconds=0.002, last_used=0.0),
    ]
    # floored at 1 ms: 1.0 * 0.001 (just used) > 0.45 * 0.002 (idle 100 s).
    assert first(RecencyCostPolicy(), candidates) == ["measured"]


# --- the shared selection -----------------------------------------------------------


def test_evict_in_order_counts_a_repeated_id_once() -> None:
    candidates = [model("a", last_used=1.0), model("a", last_used=2.0), model("b", last_used=3.0)]
    victims = evict_in_order(candidates, 2 * GB, [c.last_used for c in candidates])
    assert victims == ["a", "b"]


def test_evict_in_order_ranks_by_columns_then_model_id() -> None:
    candidates = [model("c"), model("b", bytes=2 * GB), model("a"), model("d")]
    victims = evict_in_order(candidates, 10 * GB, [2, 1, 2, 1], [0.0, 0.0, 0.0, -1.0])
    assert victims == ["d", "b", "a", "c"]


def test_evict_in_order_consumes_no_column_when_nothing_is_needed() -> None:
    def column() -> Iterator[float]:
        raise AssertionError("column consumed")
        yield 0.0

    assert evict_in_order([model("a")], 0, column()) == []
