"""plan_load and choose_drain called directly: records and books built by hand.

The scheduler tests reach the planner through whole requests; these pin down each
outcome (Go, Wait, Impossible) at its edges, the exclusive-group rules, what the
holders say, and how a faulty policy's answer is filtered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelpool.config import ModelSpec
from modelpool.core.lease import Lease
from modelpool.core.ledger import DeviceAccount
from modelpool.core.planner import Go, Impossible, Wait, booked_bytes, choose_drain, plan_load
from modelpool.core.ports import Candidate, EvictionContext, Handle
from modelpool.core.record import ModelRecord
from modelpool.core.states import ModelState
from modelpool.errors import Holder
from modelpool.plugins import POLICIES

GB = 10**9
LRU = POLICIES.get("lru")()


def record(
    model_id: str,
    size: int = 2 * GB,
    state: ModelState = ModelState.READY,
    *,
    leases: Sequence[str | None] = (),
    pinned: bool = False,
    group: str | None = None,
) -> ModelRecord:
    spec = ModelSpec(id=model_id, backend="fake", memory=size, device="cpu", group=group)
    rec = ModelRecord(spec, size, state=state, device="cpu", pinned=pinned)
    for n, task in enumerate(leases):
        handle = Handle(model_id, "cpu")
        rec.leases[n] = Lease(n, model_id, task, 5, "cpu", handle, 0.0, True)
    return rec


def books(budget: int, *residents: ModelRecord, reserved: Sequence[str] = ()) -> DeviceAccount:
    """A device account where each resident is committed (or only reserved) at its size."""
    account = DeviceAccount("cpu", budget)
    for rec in residents:
        if rec.model_id in reserved:
            account.reserved[rec.model_id] = rec.estimate
            account.reserved_total += rec.estimate
        else:
            account.committed[rec.model_id] = rec.estimate
            account.committed_total += rec.estimate
        if rec.state is ModelState.UNLOADING:
            account.leaving[rec.model_id] = rec.estimate
            account.leaving_total += rec.estimate
    return account


def plan(target: ModelRecord, budget: int, *residents: ModelRecord, policy: Any = LRU) -> Any:
    account = books(budget, *residents)
    return plan_load(target, account, {r.model_id: r for r in residents}, policy, 0.0, {})


class ScriptedPolicy:
    """A policy that answers what it is told (possibly nonsense), and records the question."""

    name = "scripted"

    def __init__(self, answer: list[str]) -> None:
        self.answer = answer
        self.asked: list[tuple[list[str], EvictionContext]] = []

    def victims(self, candidates: Sequence[Candidate], context: EvictionContext) -> list[str]:
        self.asked.append(([c.model_id for c in candidates], context))
        return list(self.answer)


# --- Go: enough free, exactly or after evictions --------------------------------------


def test_a_model_that_fits_exactly_in_what_is_free_goes_with_no_victims() -> None:
    a = record("a", 6 * GB)
    outcome = plan(record("new", 2 * GB, ModelState.UNLOADED), 8 * GB, a)
    assert outcome == Go("cpu", [])


def test_one_byte_short_evicts() -> None:
    a = record("a", 6 * GB)
    outcome = plan(record("new", 2 * GB + 1, ModelState.UNLOADED), 8 * GB, a)
    assert isinstance(outcome, Go)
    assert outcome.victims == [a]


def test_victims_stop_once_enough_is_free() -> None:
    a, b, c = record("a"), record("b"), record("c")
    a.stats.last_used, b.stats.last_used, c.stats.last_used = 1.0, 2.0, 3.0
    outcome = plan(record("new", 4 * GB, ModelState.UNLOADED), 6 * GB, a, b, c)
    assert isinstance(outcome, Go)
    assert outcome.victims == [a, b]  # least recently used first, and no more


def test_the_policy_is_asked_only_for_the_shortfall_and_only_about_idle_models() -> None:
    idle, leased, pinned = record("idle"), record("leased", leases=["t"]), record("p", pinned=True)
    loading = record("loading", state=ModelState.LOADING)
    policy = ScriptedPolicy(["idle"])
    target = record("new", 3 * GB, ModelState.UNLOADED)
    outcome = plan(target, 9 * GB, idle, leased, pinned, loading, policy=policy)
    assert outcome == Go("cpu", [idle])
    [(candidates, context)] = policy.asked
    assert candidates == ["idle"]
    assert context.need == 2 * GB  # 9 − 8 booked = 1 GB free; 3 GB needed
    assert (context.now, context.demand) == (0.0, {})


def test_a_faulty_policys_made_up_repeated_or_busy_ids_are_ignored() -> None:
    a, b = record("a"), record("b", leases=["t"])
    policy = ScriptedPolicy(["ghost", "b", "new", "a", "a"])
    target = record("new", 2 * GB, ModelState.UNLOADED)
    outcome = plan(target, 6 * GB, a, b, target, policy=policy)
    assert outcome == Go("cpu", [a])


def test_a_model_reserved_but_not_yet_committed_counts_at_its_reservation() -> None:
    loading = record("loading", 3 * GB, ModelState.LOADING)
    account = books(8 * GB, loading, reserved=["loading"])
    assert booked_bytes(account, loading) == 3 * GB
    assert booked_bytes(account, record("elsewhere")) == 0


# --- Wait and Impossible ----------------------------------------------------------------


def test_memory_held_by_leases_is_a_wait_with_the_leased_models_drainable() -> None:
    leased = record("leased", 4 * GB, leases=["job-1", None])
    outcome = plan(record("new", 6 * GB, ModelState.UNLOADED), 8 * GB, leased)
    assert isinstance(outcome, Wait)
    assert outcome.drainable == [leased]
    assert outcome.shortfall == 2 * GB
    assert outcome.holders == [Holder("leased", 4 * GB, "in use by job-1, lease-1")]


def test_a_load_in_flight_will_let_go_so_the_plan_waits() -> None:
    loading = record("loading", 4 * GB, ModelState.LOADING)
    outcome = plan(record("new", 6 * GB, ModelState.UNLOADED), 8 * GB, loading)
    assert isinstance(outcome, Wait)
    assert outcome.drainable == []  # nothing to drain: it is not serving yet
    assert outcome.holders == [Holder("loading", 4 * GB, "loading")]


def test_exactly_enough_once_the_holders_let_go_is_a_wait_not_impossible() -> None:
    leased = record("leased", 4 * GB, leases=["t"])
    pinned = record("pinned", 4 * GB, pinned=True)
    waits = plan(record("new", 4 * GB, ModelState.UNLOADED), 8 * GB, leased, pinned)
    assert isinstance(waits, Wait)
    assert waits.drainable == [leased]  # never the pinned one
    fails = plan(record("new", 4 * GB + 1, ModelState.UNLOADED), 8 * GB, leased, pinned)
    assert isinstance(fails, Impossible)


def test_memory_held_by_pinned_models_is_impossible_and_names_them() -> None:
    pinned = record("pinned", 6 * GB, pinned=True)
    idle = record("idle", 1 * GB)
    outcome = plan(record("new", 4 * GB, ModelState.UNLOADED), 8 * GB, pinned, idle)
    assert isinstance(outcome, Impossible)
    error = outcome.error
    assert (error.model_id, error.device, error.need, error.free) == ("new", "cpu", 4 * GB, GB)
    assert error.holders == [Holder("pinned", 6 * GB, "pinned")]


def test_a_leaving_model_is_no_holder() -> None:
    leaving = record("leaving", 4 * GB, ModelState.UNLOADING)
    pinned = record("pinned", 4 * GB, pinned=True)
    outcome = plan(record("new", 6 * GB, ModelState.UNLOADED), 8 * GB, leaving, pinned)
    assert isinstance(outcome, Impossible)
    assert [h.model_id for h in outcome.error.holders] == ["pinned"]


# --- exclusive groups -------------------------------------------------------------------


def test_an_idle_group_member_is_evicted_even_with_memory_free() -> None:
    other = record("other", 2 * GB, group="heavy")
    outsider = record("outsider", 2 * GB)
    target = record("new", 2 * GB, ModelState.UNLOADED, group="heavy")
    outcome = plan(target, 16 * GB, other, outsider, target)
    assert outcome == Go("cpu", [other])


def test_a_forced_group_member_counts_toward_the_memory_needed() -> None:
    member = record("member", 4 * GB, group="heavy")
    idle = record("idle", 2 * GB)
    target = record("new", 6 * GB, ModelState.UNLOADED, group="heavy")
    outcome = plan(target, 8 * GB, member, idle)  # 2 free + member's 4 = 6: enough
    assert outcome == Go("cpu", [member])


def test_a_group_member_already_leaving_is_skipped_and_the_others_still_judged() -> None:
    leaving = record("leaving", 2 * GB, ModelState.UNLOADING, group="heavy")
    pinned = record("pinned", 2 * GB, pinned=True, group="heavy")
    target = record("new", 2 * GB, ModelState.UNLOADED, group="heavy")
    outcome = plan(target, 16 * GB, leaving, pinned)
    assert isinstance(outcome, Impossible)
    error = outcome.error
    assert error.holders == [Holder("pinned", 2 * GB, "pinned member of exclusive group 'heavy'")]
    assert (error.model_id, error.device, error.need) == ("new", "cpu", 2 * GB)
    assert error.free == 14 * GB  # 16 − (4 − 2 leaving)


def test_a_busy_group_member_makes_the_load_wait_and_only_leased_ones_drain() -> None:
    leased = record("leased", 2 * GB, leases=["t1"], group="heavy")
    loading = record("loading", 2 * GB, ModelState.LOADING, group="heavy")
    idle = record("idle", 2 * GB, group="heavy")
    target = record("new", 3 * GB, ModelState.UNLOADED, group="heavy")
    outcome = plan(target, 16 * GB, leased, loading, idle)
    assert outcome == Wait(
        "cpu",
        [Holder("leased", 2 * GB, "in use by t1"), Holder("loading", 2 * GB, "loading")],
        [leased],
        3 * GB,
    )


def test_the_target_itself_among_the_group_is_skipped_and_the_others_still_judged() -> None:
    target = record("new", 2 * GB, ModelState.LOADING, group="heavy")
    pinned = record("pinned", 2 * GB, pinned=True, group="heavy")
    account = books(4 * GB, target, pinned, reserved=["new"])
    residents = {"new": target, "pinned": pinned}
    outcome = plan_load(target, account, residents, LRU, 0.0, {})
    assert isinstance(outcome, Impossible)
    assert outcome.error.free == 0  # a full device: never negative, never made up
    why = "pinned member of exclusive group 'heavy'"  # found by the group rule itself
    assert outcome.error.holders == [Holder("pinned", 2 * GB, why)]


def test_an_over_full_device_reports_nothing_free() -> None:
    pinned = record("pinned", 9 * GB, pinned=True)
    outcome = plan(record("new", 1 * GB, ModelState.UNLOADED), 8 * GB, pinned)
    assert isinstance(outcome, Impossible)
    assert outcome.error.free == 0


def test_the_policy_sees_the_demand() -> None:
    policy = ScriptedPolicy(["a"])
    a = record("a", 4 * GB)
    account = books(4 * GB, a)
    target = record("new", 4 * GB, ModelState.UNLOADED)
    outcome = plan_load(target, account, {"a": a}, policy, 3.0, {"embed": 0.25, "chat": 0.75})
    assert outcome == Go("cpu", [a])
    [(_, context)] = policy.asked
    assert (context.now, dict(context.demand)) == (3.0, {"embed": 0.25, "chat": 0.75})


def test_members_of_another_group_are_left_alone() -> None:
    other = record("other", 2 * GB, group="light")
    target = record("new", 2 * GB, ModelState.UNLOADED, group="heavy")
    assert plan(target, 16 * GB, other) == Go("cpu", [])


# --- choose_drain -----------------------------------------------------------------------


def test_drain_asks_the_policy_about_the_drainable_with_the_shortfall() -> None:
    a, b = record("a", leases=["t"]), record("b", leases=["u"])
    wait = Wait("cpu", [], [a, b], 3 * GB)
    policy = ScriptedPolicy(["b", "ghost", "b", "a"])
    assert choose_drain(wait, policy, 7.0, {"chat": 1.0}) == [b, a]
    [(candidates, context)] = policy.asked
    assert candidates == ["a", "b"]
    assert (context.need, context.now, dict(context.demand)) == (3 * GB, 7.0, {"chat": 1.0})


def test_nothing_drainable_asks_nobody() -> None:
    policy = ScriptedPolicy(["a"])
    assert choose_drain(Wait("cpu", [], [], GB), policy, 0.0, {}) == []
    assert policy.asked == []
