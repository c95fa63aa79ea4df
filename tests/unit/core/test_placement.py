"""Placement by cost, called directly on hand-built books and through the scheduler.

The contract, run for every registered policy: a Go always fits once its victims are
gone; a device with room now beats any eviction and the tightest such device wins;
among evictions the victims' reload cost is the least any device offers; victims are
idle, unpinned and READY; the same books give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest
from harness import GB, Harness
from hypothesis import given, settings
from hypothesis import strategies as st

from modelpool.config import ModelSpec
from modelpool.core.ledger import DeviceAccount
from modelpool.core.placement import place_across, place_one, reload_cost
from modelpool.core.planner import Go, Impossible, Plan, Wait, booked_bytes, plan_load
from modelpool.core.ports import Candidate, EvictionPolicy, Handle
from modelpool.core.record import ModelRecord
from modelpool.core.states import ModelState
from modelpool.plugins import POLICIES
from modelpool.types import ModelId

Box = dict[str, tuple[DeviceAccount, dict[ModelId, ModelRecord]]]


def model(model_id: str, size: int, *, load_seconds: float = 1.0, pinned: bool = False,
          leased: bool = False, frequency: float = 0.0,
          last_used: float | None = None) -> ModelRecord:  # fmt: skip
    spec = ModelSpec(id=model_id, backend="fake", memory=size)
    rec = ModelRecord(spec, size, state=ModelState.READY, pinned=pinned)
    rec.stats.record_load(0.0, load_seconds)
    if last_used is not None:
        rec.stats.last_used = last_used  # decisions here are made at time 0
    if frequency:
        rec.stats._frequency = frequency  # recent demand, as counted at time 0
    if leased:
        from modelpool.core.lease import Lease

        rec.leases[1] = Lease(1, model_id, "t", 5, "x", Handle(model_id, "x"), 0.0, True)
    return rec


def box(budget: int, *devices: Sequence[ModelRecord]) -> Box:
    """cuda:0..cuda:N-1, each with ``budget`` and the given residents committed."""
    made: Box = {}
    for i, residents in enumerate(devices):
        account = DeviceAccount(f"cuda:{i}", budget)
        for rec in residents:
            rec.device = account.device
            account.committed[rec.model_id] = rec.estimate
            account.committed_total += rec.estimate
        made[account.device] = (account, {r.model_id: r for r in residents})
    return made


def planner(target: ModelRecord, books: Box, policy: EvictionPolicy) -> Callable[..., Plan]:
    def plan_on(account: DeviceAccount, need: int) -> Plan:
        residents: Mapping[ModelId, ModelRecord] = books[account.device][1]
        return plan_load(target, account, residents, policy, 0.0, {}, need)

    return plan_on


def place(target: ModelRecord, books: Box, policy_name: str = "lru") -> Plan:
    policy = POLICIES.get(policy_name)()
    accounts = [account for account, _ in books.values()]
    return place_one(accounts, target.estimate, planner(target, books, policy), policy, 0.0)


def test_a_device_with_room_beats_any_eviction() -> None:
    books = box(10 * GB, [model("old", 8 * GB)], [model("busy", 5 * GB)])
    plan = place(model("new", 4 * GB), books)
    assert isinstance(plan, Go)
    assert (plan.device, plan.victims) == ("cuda:1", [])


def test_the_tightest_device_with_room_wins_so_large_holes_stay() -> None:
    # "most room" would take cuda:0 and leave no 9 GB hole for a larger model.
    books = box(10 * GB, [], [model("m", 5 * GB)], [model("n", 2 * GB)])
    plan = place(model("new", 4 * GB), books)
    assert isinstance(plan, Go)
    assert plan.device == "cuda:1"


def test_among_evictions_the_cheapest_to_reload_goes() -> None:
    slow = model("slow", 8 * GB, load_seconds=30.0)
    quick = model("quick", 8 * GB, load_seconds=2.0)
    books = box(10 * GB, [slow], [quick])
    plan = place(model("new", 6 * GB), books)
    assert isinstance(plan, Go)
    assert (plan.device, [v.model_id for v in plan.victims]) == ("cuda:1", ["quick"])


def test_a_victim_still_wanted_costs_more_than_a_forgotten_one() -> None:
    # Twice as slow to reload, but idle for an hour: it is the cheaper eviction.
    wanted = model("wanted", 8 * GB, load_seconds=2.0, last_used=-5.0)
    forgotten = model("forgotten", 8 * GB, load_seconds=4.0, last_used=-3600.0)
    books = box(10 * GB, [wanted], [forgotten])
    plan = place(model("new", 6 * GB), books)
    assert isinstance(plan, Go)
    assert [v.model_id for v in plan.victims] == ["forgotten"]


def test_a_policy_that_prices_reloads_is_asked() -> None:
    class Priced:
        name = "priced"

        def victims(self, candidates: Sequence[Candidate], context: object) -> list[str]:
            return [c.model_id for c in candidates]

        def reload_cost(self, candidate: Candidate, now: float) -> float:
            return 0.0 if candidate.model_id == "slow" else 100.0

    slow, quick = model("slow", 8 * GB, load_seconds=30.0), model("quick", 8 * GB)
    books = box(10 * GB, [slow], [quick])
    target = model("new", 6 * GB)
    policy = Priced()
    assert reload_cost(policy, slow.candidate(), 0.0) == 0.0
    accounts = [a for a, _ in books.values()]
    plan = place_one(accounts, target.estimate, planner(target, books, policy), policy, 0.0)
    assert isinstance(plan, Go)
    assert [v.model_id for v in plan.victims] == ["slow"]


def test_nothing_to_evict_anywhere_waits_for_the_first_device_that_may_free() -> None:
    books = box(
        10 * GB, [model("pinned", 8 * GB, pinned=True)], [model("busy", 8 * GB, leased=True)]
    )
    plan = place(model("new", 6 * GB), books)
    assert isinstance(plan, Wait)
    assert plan.device == "cuda:1"


def test_a_count_takes_the_cheapest_devices_and_splits_by_room() -> None:
    books = box(10 * GB, [model("a", 6 * GB)], [], [model("b", 2 * GB)], [model("c", 9 * GB)])
    target = model("wide", 12 * GB)
    policy = POLICIES.get("lru")()
    accounts = [a for a, _ in books.values()]
    plan = place_across(
        accounts, target.estimate, 2, None, planner(target, books, policy), policy, 0.0,
        fixed=False,
    )  # fmt: skip
    assert isinstance(plan, Go)
    assert plan.victims == []
    # cuda:2 (8 GB free) is the tighter fit for a 6 GB part than cuda:1 (10 GB free).
    assert plan.placement.devices == ("cuda:2", "cuda:1")
    assert plan.placement.split == pytest.approx((8 / 18, 10 / 18))


def test_a_list_goes_where_it_says_and_waits_as_a_whole() -> None:
    books = box(10 * GB, [], [model("busy", 8 * GB, leased=True)])
    target = model("pair", 8 * GB)
    policy = POLICIES.get("lru")()
    accounts = [a for a, _ in books.values()]
    plan = place_across(
        accounts, target.estimate, 2, (1.0, 1.0), planner(target, books, policy), policy, 0.0,
        fixed=True,
    )  # fmt: skip
    assert isinstance(plan, Wait)
    assert plan.device == "cuda:1"


def test_a_list_blocked_by_a_pinned_model_is_refused() -> None:
    books = box(10 * GB, [], [model("pinned", 8 * GB, pinned=True)])
    target = model("pair", 8 * GB)
    policy = POLICIES.get("lru")()
    accounts = [a for a, _ in books.values()]
    plan = place_across(
        accounts, target.estimate, 2, None, planner(target, books, policy), policy, 0.0,
        fixed=True,
    )  # fmt: skip
    assert isinstance(plan, Impossible)


# --- the contract, for every policy ---------------------------------------------------


def shape(plan: Plan) -> object:
    """What a plan says, comparable (errors do not compare equal)."""
    if isinstance(plan, Go):
        return ("go", plan.placement, [v.model_id for v in plan.victims])
    if isinstance(plan, Wait):
        return ("wait", plan.device, plan.holders, plan.shortfall)
    return ("impossible", str(plan.error))


residents = st.lists(
    st.tuples(
        st.integers(1, 9),  # GB
        st.floats(0, 60, allow_nan=False),  # load seconds
        st.booleans(),  # leased
        st.integers(0, 5),  # pinned when 0
    ),
    max_size=4,
)


@pytest.mark.parametrize("policy_name", POLICIES.names())
@settings(max_examples=60, deadline=None)
@given(devices=st.lists(residents, min_size=1, max_size=5), need=st.integers(1, 10))
def test_placement_contract(
    policy_name: str, devices: list[list[tuple[int, float, bool, int]]], need: int
) -> None:
    counter = iter(range(10**6))
    layout = [
        [model(f"m{next(counter)}", gb * GB, load_seconds=seconds, leased=leased,
               pinned=pin == 0) for gb, seconds, leased, pin in residents_]
        for residents_ in devices
    ]  # fmt: skip
    books = box(10 * GB, *layout)
    target = model("target", need * GB)
    plan = place(target, books, policy_name)
    assert shape(plan) == shape(place(target, books, policy_name))  # same books, same answer
    if not isinstance(plan, Go):
        free = [a for a, _ in books.values() if a.planned_free >= target.estimate]
        assert not free, "a device had room, yet the model did not go"
        return
    account, on_device = books[plan.device]
    for victim in plan.victims:
        assert on_device[victim.model_id] is victim
        assert victim.state is ModelState.READY
        assert not victim.leases
        assert not victim.pinned
    freed = sum(booked_bytes(account, v) for v in plan.victims)
    assert account.planned_free + freed >= target.estimate
    with_room = [a for a, _ in books.values() if a.planned_free >= target.estimate]
    if with_room:
        assert plan.victims == []
        assert account.planned_free == min(a.planned_free for a in with_room)
    else:
        policy = POLICIES.get(policy_name)()
        costs = []
        for other, _ in books.values():
            other_plan = planner(target, books, policy)(other, target.estimate)
            if isinstance(other_plan, Go):
                costs.append(
                    sum(reload_cost(policy, v.candidate(), 0.0) for v in other_plan.victims)
                )
        chosen = sum(reload_cost(policy, v.candidate(), 0.0) for v in plan.victims)
        assert chosen == min(costs)


# --- through the scheduler ------------------------------------------------------------

BOX = {f"cuda:{i}": 8 * GB for i in range(4)}


def test_a_spread_model_is_booked_on_every_device_at_once_and_released_together() -> None:
    h = Harness({"wide": {"memory": 12 * GB, "device": "auto", "devices": 2}}, budgets=BOX)
    h.s.load("wide")
    record = h.s.resolve("wide")
    assert record.state is ModelState.LOADING
    placement = h.fx.placements["wide"]
    assert len(placement.devices) == 2
    for device in placement.devices:
        assert "wide" in h.s.ledger.account(device).reserved
    assert sum(h.s.ledger.account(d).reserved["wide"] for d in placement.devices) == 12 * GB
    h.settle()
    h.s.unload("wide")
    h.settle()
    assert h.s.ledger.is_empty()
    assert all(not h.s.residents(d) for d in BOX)


def test_a_spread_load_starts_only_when_every_part_is_free() -> None:
    h = Harness(
        {
            "old": {"memory": 6 * GB, "device": "cuda:1"},
            "pair": {"memory": 8 * GB, "device": "auto", "devices": ["cuda:0", "cuda:1"]},
        },
        budgets=BOX,
    )
    h.load("old")
    h.s.load("pair")  # old must leave cuda:1 first
    assert h.s.resolve("old").state is ModelState.UNLOADING
    assert h.s.resolve("pair").state is ModelState.LOADING
    assert not h.s.resolve("pair").load_started
    assert ("load", "pair") not in h.fx.calls
    h.finish_unload("old")
    assert h.s.resolve("pair").load_started
    assert h.fx.placements["pair"].devices == ("cuda:0", "cuda:1")


def test_a_model_too_big_for_any_two_devices_is_refused_at_once() -> None:
    from modelpool.errors import DoesNotFit

    h = Harness({"huge": {"memory": 20 * GB, "device": "auto", "devices": 2}}, budgets=BOX)
    with pytest.raises(DoesNotFit, match="any 2 devices"):
        h.s.request("huge")


def test_placement_event_and_status_name_every_device() -> None:
    h = Harness({"wide": {"memory": 12 * GB, "device": "auto", "devices": 2}}, budgets=BOX)
    h.load("wide")
    started = [e for e in h.fx.events if e.kind.name == "LOAD_STARTED"]
    assert started
    assert len(started[-1].detail["devices"]) == 2
    assert started[-1].detail["placed"] == "spread over 2 devices, the 2 cheapest to make room on"


def test_the_load_event_says_why_its_device_was_chosen() -> None:
    models = {
        "slow": {"memory": 6 * GB, "device": "cuda:0"},
        "quick": {"memory": 6 * GB, "device": "cuda:1"},
        "new": {"memory": 4 * GB, "device": "auto"},
    }
    h = Harness(models, budgets={"cuda:0": 8 * GB, "cuda:1": 8 * GB, "cuda:2": 5 * GB})
    h.load("slow", "quick")
    h.load("new")
    started = [e for e in h.fx.events if e.kind.name == "LOAD_STARTED" and e.model_id == "new"]
    assert started[-1].detail["device"] == "cuda:2"
    assert started[-1].detail["placed"] == "room without eviction, best fit (953.7 MiB left)"


@pytest.mark.parametrize(
    ("placement", "device"), [("cost", "cuda:1"), ("most_room", "cuda:0"), ("first_fit", "cuda:0")]
)
def test_pool_placement_setting_picks_the_rule(placement: str, device: str) -> None:
    models = {
        "held": {"memory": 5 * GB, "device": "cuda:1"},
        "new": {"memory": 3 * GB, "device": "auto"},
    }
    h = Harness(models, budgets={"cuda:0": 8 * GB, "cuda:1": 8 * GB}, placement=placement)
    h.load("held")
    h.load("new")
    assert h.s.resolve("new").device == device


def test_status_shows_each_devices_memory_by_model() -> None:
    from modelpool.core.queries import resource_status

    models = {
        "wide": {"memory": 12 * GB, "device": "auto", "devices": ["cuda:0", "cuda:1"]},
        "one": {"memory": 2 * GB, "device": "cuda:2"},
    }
    h = Harness(models, budgets=BOX)
    h.load("wide", "one")
    status = resource_status(h.s, None, h.clock())
    memory = status["memory_info"]
    assert memory["cuda:0"]["models"] == {"wide": 6 * GB}
    assert memory["cuda:1"]["models"] == {"wide": 6 * GB}
    assert memory["cuda:2"]["models"] == {"one": 2 * GB}
    assert memory["cuda:3"]["models"] == {}
    assert status["model_resources"]["wide"]["devices"] == {"cuda:0": 6 * GB, "cuda:1": 6 * GB}
    assert status["model_resources"]["wide"]["memory_bytes"] == 12 * GB


def test_a_model_no_one_device_holds_is_spread_when_its_backend_can() -> None:
    from modelpool.config import PoolSettings
    from modelpool.core.scheduler import Scheduler
    from modelpool.core.testing import ManualClock, RecordingEffects

    specs = [
        ModelSpec(id="huge", backend="fake", memory=20 * GB),
        ModelSpec(id="stuck", backend="fake", memory=20 * GB),
    ]
    fx = RecordingEffects()
    scheduler = Scheduler(
        specs, {s.id: 20 * GB for s in specs}, POLICIES.get("lru")(), fx, ManualClock(),
        PoolSettings(budgets=BOX), spanning=["huge"],
    )  # fmt: skip
    scheduler.load("huge")
    assert len(fx.placements["huge"].devices) == 3  # 8 GB each: the fewest that hold 20
    from modelpool.errors import DoesNotFit

    with pytest.raises(DoesNotFit):
        scheduler.load("stuck")  # its backend cannot span: no device could ever hold it


def test_a_second_copy_goes_to_another_device_when_that_costs_no_eviction() -> None:
    h = Harness(
        {"chat": {"memory": 3 * GB, "device": "auto", "replicas": 2}},
        budgets={"cuda:0": 8 * GB, "cuda:1": 8 * GB},
    )
    h.load("chat#1", "chat#2")
    # Best fit alone would put the second copy beside the first (5 GB left there).
    assert {h.s.resolve("chat#1").device, h.s.resolve("chat#2").device} == {"cuda:0", "cuda:1"}


def test_copies_share_a_device_when_only_it_has_room() -> None:
    h = Harness(
        {
            "chat": {"memory": 3 * GB, "device": "auto", "replicas": 2},
            "held": {"memory": 7 * GB, "device": "cuda:1", "pinned": True},
        },
        budgets={"cuda:0": 8 * GB, "cuda:1": 8 * GB},
    )
    h.load("held", "chat#1", "chat#2")
    assert h.s.resolve("chat#1").device == h.s.resolve("chat#2").device == "cuda:0"


def test_a_spread_victim_frees_only_its_share_and_the_plan_takes_enough_others() -> None:
    """The policy counts what a spread model frees on this device (its share), not its
    whole size: counting the whole, it stopped at that one victim, and the load waited
    for an idle model that nothing would ever make leave."""
    h = Harness(
        {
            "pair": {"memory": 8 * GB, "device": "auto", "devices": ["cuda:0", "cuda:1"]},
            "small": {"memory": 3 * GB, "device": "cuda:1"},
            "new": {"memory": 7 * GB, "device": "cuda:1"},
        },
        budgets={"cuda:0": 8 * GB, "cuda:1": 8 * GB},
    )
    h.used_in_order("pair", "small")  # lru: pair first, then small
    assert h.s.ledger.account("cuda:1").committed["pair"] == 4 * GB
    h.s.load("new")  # 1 GB free on cuda:1: pair's 4 GB there and small's 3 GB must go
    assert h.state("new") is ModelState.LOADING
    assert sorted(h.fx.unloads) == ["pair", "small"]


def test_a_starving_load_drains_enough_when_a_busy_victim_is_spread() -> None:
    h = Harness(
        {
            "pair": {"memory": 8 * GB, "device": "auto", "devices": ["cuda:0", "cuda:1"]},
            "small": {"memory": 3 * GB, "device": "cuda:1"},
            "new": {"memory": 7 * GB, "device": "cuda:1"},
        },
        budgets={"cuda:0": 8 * GB, "cuda:1": 8 * GB},
        starvation_limit=10.0,
    )
    h.used_in_order("pair", "small")
    held = [h.lease("pair"), h.lease("small")]  # both busy: the load must wait for them
    h.wait("new")
    h.clock.advance(11)
    h.s.on_tick()  # starving now: stop granting to enough of the busy ones
    assert {r.model_id for r in h.s.records() if r.draining} == {"pair", "small"}
    for lease in held:
        h.s.release(lease)
