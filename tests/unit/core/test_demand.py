"""The demand tracker's running counts agree with recounting its window."""

from __future__ import annotations

import random

import pytest

from modelpool.core.demand import DemandTracker


def recount(window: list[tuple[str, ...]]) -> dict[str, float]:
    counts: dict[str, float] = {}
    for tags in window:
        for tag in tags:
            counts[tag] = counts.get(tag, 0.0) + 1.0 / len(tags)
    total = sum(counts.values())
    return {tag: n / total for tag, n in counts.items()} if total else {}


@pytest.mark.parametrize("seed", range(5))
def test_running_counts_match_a_recount_of_the_window(seed: int) -> None:
    rng = random.Random(seed)
    kinds = [(), ("chat",), ("code",), ("chat", "general"), ("embedding",), ("image", "chat")]
    tracker = DemandTracker(window=16)
    seen: list[tuple[str, ...]] = []
    for _ in range(200):
        tags = rng.choice(kinds)
        tracker.note(tags)
        seen.append(tags)
        expected = recount(seen[-16:])
        assert tracker.shares() == pytest.approx(expected)
        assert set(tracker.shares()) == set(expected)  # a tag that left is gone


def test_no_requests_no_demand() -> None:
    tracker = DemandTracker(window=2)
    assert tracker.shares() == {}
    tracker.note(())
    assert tracker.shares() == {}
