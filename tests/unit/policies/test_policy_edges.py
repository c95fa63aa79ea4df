"""Each policy's tie-breaks and formulas at their edges, where a changed operator or
constant would still pass the broader scenarios of ``test_policy_choices.py``.

Candidates are named so that breaking a tie by model id gives the other answer than
the policy's own tie-break.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelpool.core.ports import Candidate, EvictionContext, EvictionPolicy
from modelpool.policies import (
    CostAwarePolicy,
    HybridPolicy,
    LFUPolicy,
    MemoryPressurePolicy,
    PriorityPolicy,
)

GB = 10**9
NOW = 100.0


def model(model_id: str, **stats: Any) -> Candidate:
    stats.setdefault("bytes", GB)
    return Candidate(model_id=model_id, **stats)


def first(policy: EvictionPolicy, *candidates: Candidate, now: float = NOW) -> str:
    return policy.victims(list(candidates), EvictionContext(need=1, now=now))[0]


# --- ties go to the least recently used, not to the first id ---------------------------


@pytest.mark.parametrize(
    ("policy", "same"),
    [
        (MemoryPressurePolicy(), {"bytes": 2 * GB}),
        (LFUPolicy(), {"use_count": 3}),
        (PriorityPolicy(), {"priority": 7}),
        (HybridPolicy(weights={"idle": 0, "loads": 1, "tasks": 0, "errors": 0}), {"load_count": 1}),
        (CostAwarePolicy(), {"frequency": 1.0, "frequency_at": NOW, "load_seconds": 2.0}),
    ],
)
def test_a_tie_goes_to_the_least_recently_used(policy: EvictionPolicy, same: Any) -> None:
    a_recent = model("a", last_used=90.0, **same)
    b_older = model("b", last_used=10.0, **same)
    assert first(policy, a_recent, b_older) == "b"


# --- cost-aware: frequency × reload cost / bytes ----------------------------------------


def test_cost_aware_divides_by_the_bytes_held() -> None:
    # Same frequency and reload time: the big one is worth less per byte, so it goes.
    small = model("a", bytes=GB, frequency=1.0, frequency_at=NOW, load_seconds=4.0)
    big = model("b", bytes=4 * GB, frequency=1.0, frequency_at=NOW, load_seconds=4.0)
    assert first(CostAwarePolicy(), small, big) == "b"


def test_cost_aware_keeps_what_is_slow_to_reload() -> None:
    slow = model("a", frequency=1.0, frequency_at=NOW, load_seconds=30.0, last_used=10.0)
    fast = model("b", frequency=1.0, frequency_at=NOW, load_seconds=3.0, last_used=90.0)
    assert first(CostAwarePolicy(), slow, fast) == "b"


def test_cost_aware_floors_unmeasured_reload_times() -> None:
    # Both under the floor count as the floor: a tie, broken by LRU (a is older).
    a = model("a", frequency=1.0, frequency_at=NOW, load_seconds=0.0, last_used=10.0)
    b = model("b", frequency=1.0, frequency_at=NOW, load_seconds=0.5, last_used=90.0)
    assert first(CostAwarePolicy(min_load_seconds=1.0), a, b) == "a"
    # Above the floor the measured time counts: b is dearer to reload and stays.
    b_dear = model("b", frequency=1.0, frequency_at=NOW, load_seconds=2.0, last_used=90.0)
    assert first(CostAwarePolicy(min_load_seconds=1.0), a, b_dear) == "a"
    a_dear = model("a", frequency=1.0, frequency_at=NOW, load_seconds=2.0, last_used=10.0)
    assert first(CostAwarePolicy(min_load_seconds=1.0), a_dear, b) == "b"


def test_cost_aware_default_floor_is_a_millisecond() -> None:
    assert CostAwarePolicy().min_load_seconds == 0.001
    # 0.5 ms measured counts as 1 ms; 1.5 ms is dearer than that.
    a = model("a", frequency=1.0, frequency_at=NOW, load_seconds=0.0015, last_used=10.0)
    b = model("b", frequency=1.0, frequency_at=NOW, load_seconds=0.0005, last_used=90.0)
    assert first(CostAwarePolicy(), a, b) == "b"


def test_cost_aware_counts_zero_bytes_as_one() -> None:
    # 1 s to reload per byte against 2 s per 2 bytes: the same value, so the older goes.
    empty = model("a", bytes=0, frequency=1.0, frequency_at=NOW, load_seconds=1.0, last_used=90.0)
    two = model("b", bytes=2, frequency=1.0, frequency_at=NOW, load_seconds=2.0, last_used=10.0)
    assert first(CostAwarePolicy(), empty, two) == "b"


def test_cost_aware_decays_frequency_to_now() -> None:
    stale = model("a", frequency=4.0, frequency_at=0.0, load_seconds=1.0, last_used=90.0)
    fresh = model("b", frequency=1.0, frequency_at=6000.0, load_seconds=1.0, last_used=10.0)
    # 4 counted ten half-lives ago has decayed below 1 counted now
    assert first(CostAwarePolicy(), stale, fresh, now=6000.0) == "a"
    # ...but not before time has passed: at 0 the stale count is worth its 4
    assert first(CostAwarePolicy(), stale, fresh, now=0.0) == "b"


# --- hybrid: each factor over its maximum -----------------------------------------------


def test_hybrid_counts_idle_time_from_now() -> None:
    older = model("a", last_used=NOW - 50.0, load_count=1)
    newer = model("b", last_used=NOW - 10.0)
    scores = HybridPolicy(weights={"idle": 1.0, "loads": 0, "tasks": 0, "errors": 0}).scores(
        [older, newer], NOW
    )
    assert scores == pytest.approx({"a": 1.0, "b": 0.2})


def test_hybrid_idle_under_a_second_still_counts() -> None:
    policy = HybridPolicy(weights={"idle": 1.0, "loads": 0, "tasks": 0, "errors": 0})
    scores = policy.scores([model("a", last_used=NOW - 0.5), model("b", last_used=NOW)], NOW)
    assert scores == pytest.approx({"a": 1.0, "b": 0.0})


def test_hybrid_one_load_against_none_counts() -> None:
    policy = HybridPolicy(weights={"idle": 0, "loads": 1.0, "tasks": 0, "errors": 0})
    scores = policy.scores([model("a", load_count=1), model("b", load_count=0)], NOW)
    assert scores == pytest.approx({"a": 0.0, "b": 1.0})


def test_hybrid_one_task_and_one_error_count() -> None:
    tasks = HybridPolicy(weights={"idle": 0, "loads": 0, "tasks": 1.0, "errors": 0})
    assert tasks.scores([model("a", current_tasks=1), model("b")], NOW) == pytest.approx(
        {"a": 0.0, "b": 1.0}
    )
    errors = HybridPolicy(weights={"idle": 0, "loads": 0, "tasks": 0, "errors": 1.0})
    assert errors.scores([model("a", error_count=1), model("b")], NOW) == pytest.approx(
        {"a": 1.0, "b": 0.0}
    )


def test_hybrid_default_scores_add_up_the_seed_weights() -> None:
    worst = model("a", last_used=0.0, load_count=0, current_tasks=0, error_count=2)
    best = model("b", last_used=NOW, load_count=4, current_tasks=2, error_count=0)
    scores = HybridPolicy().scores([worst, best], NOW)
    assert scores == pytest.approx({"a": 0.3 + 0.2 + 0.4 + 0.1, "b": 0.0})
    assert HybridPolicy().scores([], NOW) == {}


def test_hybrid_counts_no_idle_time_for_a_use_after_now() -> None:
    policy = HybridPolicy(weights={"idle": 1.0, "loads": 0, "tasks": 0, "errors": 0})
    scores = policy.scores(
        [model("a", last_used=NOW - 10.0), model("later", last_used=NOW + 50.0)], NOW
    )
    assert scores == pytest.approx({"a": 1.0, "later": 0.0})


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (
            {"speed": 1.0},
            "unknown factor 'speed' (known: idle, loads, tasks, errors)",
        ),
        (
            {"idle": 0, "loads": 0, "tasks": 0, "errors": 0},
            "all are zero; at least one must be > 0",
        ),
    ],
)
def test_hybrid_bad_weights_are_named(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^hybrid weights: {re.escape(message)}$"):
        HybridPolicy(weights=weights)
