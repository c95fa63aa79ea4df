"""The status report's figures that the dashboard's charts draw from."""

from __future__ import annotations

from harness import GB, Harness

from modelpool.core.queries import resource_status


def test_memory_per_device_lists_what_each_model_holds_or_is_loading() -> None:
    h = Harness(
        {"a": {"memory": 3 * GB}, "b": {"memory": 2 * GB}, "c": {"memory": GB}},
        budgets={"cpu": 8 * GB},
    )
    h.load("a")
    h.s.load("b")  # reserved, still loading

    cpu = resource_status(h.s, None, h.clock())["memory_info"]["cpu"]

    assert cpu["models"] == {"a": 3 * GB, "b": 2 * GB}
    assert sum(cpu["models"].values()) == cpu["committed"] + cpu["reserved"]
    h.settle()
    h.s.unload("a")  # leaving: still on the device until the unload is done
    assert resource_status(h.s, None, h.clock())["memory_info"]["cpu"]["models"] == {
        "a": 3 * GB,
        "b": 2 * GB,
    }
    h.settle()
    assert resource_status(h.s, None, h.clock())["memory_info"]["cpu"]["models"] == {"b": 2 * GB}


def test_the_warm_tier_lists_the_models_it_keeps() -> None:
    h = Harness(
        {"a": {"memory": 4 * GB}, "b": {"memory": 4 * GB}},
        budgets={"cpu": 4 * GB},
        warm_budget=8 * GB,
        offloadable=("a", "b"),
    )
    h.load("a", "b")  # b's load evicts a to the warm tier

    status = resource_status(h.s, None, h.clock())

    assert status["warm_memory"]["models"] == {"a": 4 * GB}
    assert status["memory_info"]["cpu"]["models"] == {"b": 4 * GB}
