"""The contract every eviction policy keeps, run against every registered policy.

From ``core.ports.EvictionPolicy``: distinct ids taken from the candidates, in eviction
order, stopping as soon as their bytes reach ``need``; all of them when that is not
enough; nothing for ``need <= 0``. Pure and deterministic: same answer twice and in
any input order, input untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelpool.policies
from modelpool.core.ports import Candidate, EvictionContext, EvictionPolicy
from modelpool.plugins import POLICIES
from modelpool.policies import CostAwarePolicy, HybridPolicy
from modelpool.types import ModelSwitchingStrategy

NAMES = POLICIES.names()

# The registered policies with their defaults, plus a few non-default configurations.
INSTANCES: list[tuple[str, Callable[[], EvictionPolicy]]] = [
    *((name, POLICIES.get(name)) for name in NAMES),
    ("hybrid", lambda: HybridPolicy(weights={"idle": 0, "loads": 0, "tasks": 0, "errors": 1})),
    ("hybrid", lambda: HybridPolicy(weights={"idle": 1, "tasks": 0})),
    ("cost_aware", lambda: CostAwarePolicy(min_load_seconds=0)),
]
INSTANCE_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(INSTANCES)]
per_policy = pytest.mark.parametrize(("name", "make"), INSTANCES, ids=INSTANCE_IDS)

TAGS = ["code", "chat", "general", "embedding", "vision"]
# Narrow ranges make ties frequent, so tie-breaking by model id is exercised too.
times = st.integers(0, 30).map(float)
stats = st.integers(0, 4)


@st.composite
def candidate_lists(draw: st.DrawFn) -> list[Candidate]:
    ids = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), unique=True, max_size=12))
    return [
        Candidate(
            model_id=model_id,
            bytes=draw(st.integers(1, 10**10)),
            priority=draw(st.integers(1, 10)),
            last_used=draw(times),
            loaded_at=draw(times),
            load_count=draw(stats),
            use_count=draw(stats),
            frequency=draw(st.floats(0, 100, allow_nan=False)),
            current_tasks=draw(stats),
            error_count=draw(stats),
            load_seconds=draw(st.floats(0, 600, allow_nan=False)),
            tags=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2))),
        )
        for model_id in ids
    ]


@st.composite
def problems(draw: st.DrawFn) -> tuple[list[Candidate], EvictionContext]:
    """Candidates and a context whose ``need`` ranges from none to more than all."""
    candidates = draw(candidate_lists())
    total = sum(c.bytes for c in candidates)
    need = draw(
        st.integers(1, max(1, total))  # usually some of them are enough
        | st.integers(total, total + 10**10)  # all of them, or not even all
        | st.integers(-(10**9), 0)  # nothing needed
    )
    latest = max((c.last_used for c in candidates), default=0.0)
    now = latest + draw(times)
    demand = draw(st.dictionaries(st.sampled_from(TAGS), st.floats(0, 1, allow_nan=False)))
    return candidates, EvictionContext(need=need, now=now, demand=demand)


def freed(candidates: Sequence[Candidate], victims: list[str]) -> int:
    size = {c.model_id: c.bytes for c in candidates}
    return sum(size[v] for v in victims)


def check_contract(
    policy: EvictionPolicy, candidates: list[Candidate], context: EvictionContext
) -> list[str]:
    """Every property of one answer that needs no second call; returns the answer."""
    before = list(candidates)
    demand_before = dict(context.demand)
    victims = policy.victims(candidates, context)

    assert type(victims) is list
    assert all(type(v) is str for v in victims), "ids are str"
    assert len(set(victims)) == len(victims), f"repeated ids in {victims}"
    assert set(victims) <= {c.model_id for c in candidates}, "ids not among the candidates"
    if context.need <= 0:
        assert victims == [], "nothing is needed, yet victims were chosen"
    elif sum(c.bytes for c in candidates) >= context.need:
        assert freed(candidates, victims) >= context.need, "frees less than needed"
    else:
        assert sorted(victims) == sorted(c.model_id for c in candidates), "not enough: all go"
    if victims:
        assert freed(candidates, victims[:-1]) < context.need, "went on after enough"

    assert all(a is b for a, b in zip(candidates, before, strict=True)), "input mutated"
    assert candidates == before, "input mutated"
    assert dict(context.demand) == demand_before, "demand mutated"
    return victims


FIXED = [
    Candidate("a", 3 * 10**9, last_used=5.0, loaded_at=1.0, use_count=2, tags=("chat",)),
    Candidate("b", 10**9, priority=9, last_used=1.0, frequency=2.0, load_seconds=30.0),
    Candidate("c", 6 * 10**9, priority=1, last_used=9.0, error_count=1, tags=("code",)),
]
FIXED_TOTAL = sum(c.bytes for c in FIXED)


@per_policy
def test_is_an_eviction_policy_named_as_registered(
    name: str, make: Callable[[], EvictionPolicy]
) -> None:
    policy = make()
    assert isinstance(policy, EvictionPolicy)
    assert policy.name == name
    assert type(policy).name == name


@per_policy
@pytest.mark.parametrize("need", [0, -1, -(10**12)])
def test_no_need_no_victims(name: str, make: Callable[[], EvictionPolicy], need: int) -> None:
    assert make().victims(FIXED, EvictionContext(need=need, now=10.0)) == []


@per_policy
def test_no_candidates_no_victims(name: str, make: Callable[[], EvictionPolicy]) -> None:
    assert make().victims([], EvictionContext(need=10**9, now=0.0)) == []


@per_policy
@pytest.mark.parametrize("need", [1, FIXED_TOTAL - 1, FIXED_TOTAL])
def test_frees_enough_from_a_fixed_pool(
    name: str, make: Callable[[], EvictionPolicy], need: int
) -> None:
    victims = check_contract(make(), FIXED, EvictionContext(need=need, now=10.0))
    assert freed(FIXED, victims) >= need


@per_policy
def test_returns_all_of_a_fixed_pool_that_is_not_enough(
    name: str, make: Callable[[], EvictionPolicy]
) -> None:
    context = EvictionContext(need=FIXED_TOTAL + 1, now=10.0, demand={"code": 1.0})
    assert sorted(check_contract(make(), FIXED, context)) == ["a", "b", "c"]


# One property test per policy checks everything, since generating the lists is what
# costs: distinct ids from the candidates, enough freed by a minimal prefix (or all),
# a prefix of the policy's one eviction order, the same answer twice and in any input
# order, input untouched.
@per_policy
@given(problem=problems(), data=st.data())
def test_contract_holds(
    name: str,
    make: Callable[[], EvictionPolicy],
    problem: tuple[list[Candidate], EvictionContext],
    data: st.DataObject,
) -> None:
    candidates, context = problem
    policy = make()
    victims = check_contract(policy, candidates, context)

    everything = EvictionContext(
        need=sum(c.bytes for c in candidates) + 1, now=context.now, demand=context.demand
    )
    order = check_contract(policy, candidates, everything)
    assert victims == order[: len(victims)], "not a prefix of the full eviction order"

    assert policy.victims(candidates, context) == victims, "second call differs"
    assert make().victims(tuple(candidates), context) == victims, "fresh instance differs"
    shuffled = data.draw(st.permutations(candidates), label="shuffled")
    assert check_contract(policy, shuffled, context) == victims, "depends on input order"


@pytest.mark.parametrize("name", [strategy.value for strategy in ModelSwitchingStrategy])
def test_builtins_are_exported_from_the_package(name: str) -> None:
    factory = POLICIES.get(name)
    assert getattr(modelpool.policies, factory.__name__) is factory
    assert factory.__name__ in modelpool.policies.__all__
