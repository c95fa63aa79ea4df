"""The scheduler's handlers for a config reload, driven directly: retire a removed model,
update metadata in place, replace settings that need a fresh load, move budgets."""

from __future__ import annotations

import pytest
from harness import GB, Harness

from modelpool.config import ModelSpec
from modelpool.core.events import EventKind
from modelpool.core.states import ModelState
from modelpool.errors import UnknownModel

TWO = {"memory": 2 * GB}


def spec(model_id: str, **fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"id": model_id, "backend": "fake", "device": "cpu", **fields})


def test_a_retired_model_serves_its_leases_refuses_new_requests_then_unloads() -> None:
    h = Harness({"a": {**TWO, "aliases": ["alpha"]}, "b": TWO})
    h.load("a")
    lease = h.lease("a", "t1")
    done = h.s.retire("a")
    assert done.waiter_id not in h.fx.granted
    with pytest.raises(UnknownModel):
        h.s.request("a")
    with pytest.raises(UnknownModel):
        h.s.request("alpha")
    assert h.fx.unloads == []  # its lease is still out
    h.s.release(lease)
    assert h.fx.unloads == ["a"]
    h.settle()
    assert h.fx.granted[done.waiter_id] is None
    h.s.remove_model("a")
    assert [r.model_id for r in h.s.records()] == ["b"]


def test_retiring_refuses_the_requests_that_were_waiting() -> None:
    h = Harness({"a": TWO})
    waiter = h.wait("a")
    h.s.retire("a")
    assert isinstance(h.fx.rejected[waiter.waiter_id], UnknownModel)


def test_metadata_changes_in_place_and_aliases_can_trade_places() -> None:
    h = Harness({"a": {**TWO, "aliases": ["x"]}, "b": TWO})
    h.load("a")
    lease = h.lease("a")
    h.s.update_models(
        [spec("a", memory=2 * GB, tags=["chat"]), spec("b", memory=2 * GB, aliases=["x"])]
    )
    assert h.state("a") is ModelState.READY
    assert h.fx.unloads == []
    assert not lease.released
    assert h.s.resolve("x").model_id == "b"
    assert h.s.resolve("a").spec.tags == ("chat",)
    changed = h.fx.kinds(EventKind.MODEL_CHANGED)
    assert [(e.model_id, e.detail["fields"]) for e in changed] == [
        ("a", ["tags", "aliases"]),
        ("b", ["aliases"]),
    ]


def test_an_alias_another_model_keeps_is_refused_before_anything_changes() -> None:
    h = Harness({"a": {**TWO, "aliases": ["x"]}, "b": TWO})
    with pytest.raises(ValueError, match="'x' already names a model"):
        h.s.update_models([spec("b", memory=2 * GB, aliases=["x"], tags=["t"])])
    assert h.s.resolve("b").spec.tags == ()
    assert h.s.resolve("x").model_id == "a"


def test_unpinning_in_a_reload_lets_the_model_be_evicted() -> None:
    h = Harness({"a": {**TWO, "pinned": True}, "b": {"memory": 7 * GB}})
    h.load("a")
    h.s.update_models([spec("a", memory=2 * GB)])
    assert h.s.resolve("a").pinned is False


def test_a_replacement_waits_for_the_leases_and_the_next_load_uses_it() -> None:
    h = Harness({"a": TWO})
    h.load("a")
    lease = h.lease("a")
    done = h.s.replace_model(spec("a", memory=3 * GB, some_option=1), 3 * GB)
    queued = h.wait("a")  # arrives during the drain: served by the new settings
    assert h.s.resolve("a").spec.memory == 2 * GB
    h.s.release(lease)
    assert h.fx.unloads == ["a"]
    h.finish_unload("a")
    assert h.fx.granted[done.waiter_id] is None
    record = h.s.resolve("a")
    assert record.spec.options == {"some_option": 1}
    assert record.estimate == 3 * GB
    assert h.fx.loads[-1][0] == "a"  # the queued request loads the new settings
    assert h.s.ledger.account("cpu").reserved == {"a": 3 * GB}
    h.finish_load("a")
    assert h.fx.granted[queued.waiter_id] is not None


def test_a_replacement_of_an_unloaded_or_failed_model_applies_at_once() -> None:
    h = Harness({"a": TWO, "b": TWO})
    done = h.s.replace_model(spec("a", memory=1 * GB), 1 * GB)
    assert h.fx.granted[done.waiter_id] is None
    assert h.s.resolve("a").estimate == 1 * GB
    h.s.load("b")
    h.fail_load("b")
    assert h.state("b") is ModelState.FAILED
    h.s.replace_model(spec("b", memory=1 * GB, fixed=True), 1 * GB)
    record = h.s.resolve("b")
    assert record.state is ModelState.UNLOADED
    assert record.failures == 0
    assert record.last_error is None


def test_a_smaller_budget_evicts_idle_models() -> None:
    h = Harness({"a": TWO, "b": TWO}, budgets={"cpu": 8 * GB})
    h.used_in_order("a", "b")
    h.s.set_budgets({"cpu": 3 * GB})
    assert h.fx.unloads == ["a"]  # lru: the least recently used goes
    assert h.s.ledger.account("cpu").budget == 3 * GB
    assert h.fx.kinds(EventKind.BUDGET_CHANGED)[-1].detail == {"device": "cpu", "new": 3 * GB}


def test_a_larger_budget_lets_a_waiting_request_go_at_once() -> None:
    h = Harness({"a": TWO, "b": TWO, "c": {"memory": 5 * GB}}, budgets={"cpu": 6 * GB})
    h.load("a", "b")
    leases = [h.lease("a"), h.lease("b")]
    h.wait("c")
    assert "c" not in h.started_loads()
    h.s.set_budgets({"cpu": 10 * GB})
    assert h.started_loads()[-1] == "c"
    for lease in leases:
        h.s.release(lease)


def test_stopping_while_an_unload_waits_for_a_load_that_never_started() -> None:
    # y's load waits for x to leave (one heavy model at a time); a reload removes y
    # meanwhile, then the pool stops: the load is given up and the removal answered.
    heavy = {"memory": 2 * GB, "group": "heavy"}
    h = Harness({"x": heavy, "y": heavy})
    h.load("x")
    h.wait("y")
    assert h.fx.unloads == ["x"]
    assert h.state("y") is ModelState.LOADING
    assert not h.s.resolve("y").load_started
    removal = h.s.retire("y")
    h.s.stop()
    assert h.state("y") is ModelState.UNLOADED
    assert h.fx.granted[removal.waiter_id] is None
    h.settle()


def test_retiring_a_model_with_replicas_takes_every_copy_and_frees_its_names() -> None:
    h = Harness({"chat": {**TWO, "aliases": ["talk"], "replicas": 2}, "b": TWO})
    h.load("chat#1", "chat#2")
    lease = h.lease("chat", "t1")
    done = h.s.retire("chat")
    for name in ("chat", "talk", "chat#1"):
        with pytest.raises(UnknownModel):
            h.s.request(name)
    h.s.release(lease)
    h.settle()
    assert sorted(h.fx.unloads) == ["chat#1", "chat#2"]
    assert h.fx.granted[done.waiter_id] is None
    h.s.remove_model("chat")
    assert [r.model_id for r in h.s.records()] == ["b"]
    h.s.add_model(spec("talk", **TWO), 2 * GB)  # the alias is free for a new model
    assert h.s.copies("talk") == [h.s.resolve("talk")]


def test_a_model_with_replicas_takes_new_metadata_on_every_copy_in_place() -> None:
    h = Harness({"chat": {**TWO, "aliases": ["talk"], "replicas": {"min": 1, "max": 2}}})
    h.load("chat#1", "chat#2")
    lease = h.lease("chat", "t1")
    new = spec("chat", **TWO, aliases=["speak"], replicas={"min": 1, "max": 2}, ttl=60.0,
               tags=["fast"], pinned=True)  # fmt: skip
    h.s.update_models([new])
    assert h.fx.unloads == []  # nothing unloads, the lease goes on
    assert [c.spec.ttl for c in h.s.copies("chat")] == [60.0, 60.0]
    assert [c.spec.tags for c in h.s.copies("chat")] == [("fast",), ("fast",)]
    assert [c.pinned for c in h.s.copies("chat")] == [True, False]  # pinned within min
    assert [c.model_id for c in h.s.copies("speak")] == ["chat#1", "chat#2"]  # routes to copies
    with pytest.raises(UnknownModel):
        h.s.request("talk")
    assert h.s.model_spec("chat").aliases == ("speak",)
    assert h.s.model_id_of("speak") == "chat"
    (event,) = h.fx.kinds(EventKind.MODEL_CHANGED)
    assert event.model_id == "chat#1"
    assert set(event.detail["fields"]) == {"aliases", "ttl", "tags", "pinned"}
    h.s.release(lease)
