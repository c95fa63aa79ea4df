"""Replica decisions as pure functions: which copy serves, when to add or drop one."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from modelpool.config import ModelSpec
from modelpool.config.placement import ReplicaSettings
from modelpool.core.replicas import (
    TWO_CHOICES_FROM,
    ReplicaSet,
    ReplicaView,
    outweighs,
    pick,
    spare,
    wants_another,
)


def view(name: str, in_flight: int = 0, **kw: object) -> ReplicaView:
    fields: dict[str, object] = {"serving": True, "loading": False, **kw}
    return ReplicaView(name, in_flight=in_flight, **fields)  # type: ignore[arg-type]


SETTINGS = ReplicaSettings(min=1, max=3, target_inflight=2)


def test_pick_takes_the_copy_with_the_fewest_in_flight() -> None:
    views = [view("m#1", 3), view("m#2", 1), view("m#3", 2)]
    assert pick(views, None, random.Random(0)) == "m#2"


def test_pick_breaks_ties_by_order_and_skips_copies_that_do_not_serve() -> None:
    views = [view("m#1", 0, serving=False, loading=True), view("m#2", 1), view("m#3", 1)]
    assert pick(views, None, random.Random(0)) == "m#2"


def test_pick_finds_no_copy_when_each_is_at_max_concurrent() -> None:
    views = [view("m#1", 2), view("m#2", 2)]
    assert pick(views, 2, random.Random(0)) is None
    assert pick([view("m#1", 2), view("m#2", 1)], 2, random.Random(0)) == "m#2"


def test_many_copies_compare_two_at_random_and_never_take_the_busiest() -> None:
    views = [view(f"m#{n}", n) for n in range(1, TWO_CHOICES_FROM + 3)]
    rng = random.Random(7)
    chosen = Counter(pick(views, None, rng) for _ in range(600))
    busiest = views[-1].model_id
    assert chosen[busiest] == 0  # it loses every comparison
    assert len(chosen) > 2  # spread, not always the least busy (that is what two choices buys)
    assert chosen.most_common(1)[0][0] == "m#1"


def test_pick_with_the_same_seed_is_the_same() -> None:
    views = [view(f"m#{n}", n % 3) for n in range(1, 9)]
    first = [pick(views, None, random.Random(3)) for _ in range(5)]
    assert first == [pick(views, None, random.Random(3)) for _ in range(5)]


def test_another_copy_when_every_copy_is_busier_than_the_target() -> None:
    assert wants_another([view("m#1", 3), view("m#2", 3)], SETTINGS) is not None
    assert wants_another([view("m#1", 3), view("m#2", 2)], SETTINGS) is None  # m#2 at target


def test_no_copy_above_max_nor_while_one_loads_nor_for_an_unused_model() -> None:
    busy = [view(f"m#{n}", 9) for n in (1, 2, 3)]
    assert wants_another(busy, SETTINGS) is None  # at max
    loading = [view("m#1", 9), view("m#2", 0, serving=False, loading=True)]
    assert wants_another(loading, SETTINGS) is None
    idle = [view("m#1", 0, serving=False), view("m#2", 0, serving=False)]
    assert wants_another(idle, ReplicaSettings(min=2, max=2)) is None


def test_a_model_in_use_below_min_gets_its_copy_back() -> None:
    views = [view("m#1", 0, serving=False), view("m#2", 0)]
    reason = wants_another(views, ReplicaSettings(min=2, max=2))
    assert reason is not None
    assert "min 2" in reason


def test_requests_waiting_for_a_slot_ask_for_another_copy() -> None:
    views = [view("m#1", 1, waiting=3), view("m#2", 0, serving=False)]
    reason = wants_another(views, ReplicaSettings(min=1, max=2, target_inflight=4))
    assert reason is not None
    assert "3 requests wait" in reason


def test_spare_drops_idle_extras_last_first_and_keeps_min() -> None:
    views = [view("m#1", idle_for=500), view("m#2", idle_for=500), view("m#3", idle_for=500)]
    assert spare(views, SETTINGS, 120) == ["m#3", "m#2"]
    assert spare(views, ReplicaSettings(min=2, max=3), 120) == ["m#3"]


def test_spare_keeps_copies_in_use_or_not_idle_long_enough() -> None:
    views = [
        view("m#1", idle_for=119),
        view("m#2", 1),
        view("m#3", idle_for=60),
        view("m#4", idle_for=500, waiting=1),
    ]
    assert spare(views, ReplicaSettings(min=1, max=4), 120) == []
    # Any idle copy may go, the first too, while min copies stay.
    assert spare(views, ReplicaSettings(min=1, max=4), 100) == ["m#1"]


def test_a_copy_may_evict_only_models_with_less_demand() -> None:
    assert outweighs(5.0, [1.0, 4.9])
    assert not outweighs(5.0, [1.0, 5.0])
    assert outweighs(0.0, [])


def test_a_replica_set_names_its_copies_and_keeps_extras_unpinned() -> None:
    spec = ModelSpec(
        id="m", backend="fake", memory="1GB", aliases=("em",), pinned=True, preload=True,
        replicas={"min": 2, "max": 3},
    )  # fmt: skip
    replica_set = ReplicaSet.of(spec)
    assert replica_set is not None
    assert replica_set.members == ("m#1", "m#2", "m#3")
    copies = [replica_set.member_spec(n) for n in (1, 2, 3)]
    assert [c.id for c in copies] == ["m#1", "m#2", "m#3"]
    assert [c.pinned for c in copies] == [True, True, False]
    assert [c.preload for c in copies] == [True, True, False]
    assert all(c.aliases == () and c.replicas is None for c in copies)


@pytest.mark.parametrize("spec_id", ["m@v2"])
def test_a_version_record_is_one_copy(spec_id: str) -> None:
    spec = ModelSpec(id="m", backend="fake", memory="1GB", replicas=2)
    version = spec.model_copy(update={"id": spec_id})
    assert ReplicaSet.of(version) is None
    assert ReplicaSet.of(ModelSpec(id="m", backend="fake", memory="1GB")) is None
