"""Plug-in registries: built-ins by reference, entry points, run-time registration."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from modelpool import POLICIES, PluginNotFound
from modelpool.plugins import Registry
from modelpool.policies import LRUPolicy


def fake_entry_points(*points: EntryPoint) -> object:
    """A discovery function that finds only ``points`` (a fake of importlib.metadata)."""

    def discover(group: str) -> list[EntryPoint]:
        return [p for p in points if p.group == group]

    return discover


def test_builtin_is_resolved_lazily_by_reference() -> None:
    registry = Registry(
        "policy", "g", {"lru": "modelpool.policies.lru:LRUPolicy"}, discover=fake_entry_points()
    )
    assert registry.names() == ["lru"]
    assert registry.get("lru") is LRUPolicy


def test_entry_point_adds_and_overrides_builtins() -> None:
    points = (
        EntryPoint("mine", "modelpool.policies.fifo:FIFOPolicy", "modelpool.policies"),
        EntryPoint("lru", "modelpool.policies.lfu:LFUPolicy", "modelpool.policies"),
        EntryPoint("other", "x:y", "modelpool.backends"),
    )
    registry = Registry(
        "policy",
        "modelpool.policies",
        {"lru": "modelpool.policies.lru:LRUPolicy"},
        discover=fake_entry_points(*points),
    )  # type: ignore[arg-type]
    assert registry.names() == ["lru", "mine"]
    assert registry.get("mine")().name == "fifo"
    assert registry.get("lru")().name == "lfu"


def test_register_at_run_time_wins() -> None:
    registry = Registry(
        "policy", "g", {"lru": "modelpool.policies.lru:LRUPolicy"}, discover=fake_entry_points()
    )
    registry.register("lru", dict)
    assert registry.get("lru") is dict


def test_unknown_name_lists_the_known_ones_with_a_suggestion() -> None:
    with pytest.raises(
        PluginNotFound, match=r"unknown eviction policy 'lur' \(did you mean 'lru'\?\)"
    ):
        POLICIES.get("lur")
    assert {
        "lru",
        "lfu",
        "fifo",
        "priority",
        "specialization",
        "memory_pressure",
        "hybrid",
        "cost_aware",
    } <= set(POLICIES.names())
