"""The contract of ``choose_strategy``: switch only past the hysteresis, and only then."""

from __future__ import annotations

from modelpool.sim.auto_choice import CandidateRow, choose_strategy


def table(**waits: float) -> list[CandidateRow]:
    return [CandidateRow(name, wait, wait / 10, int(wait)) for name, wait in waits.items()]


def test_a_candidate_beyond_the_hysteresis_wins_and_the_why_says_by_how_much() -> None:
    name, why = choose_strategy("hybrid", table(hybrid=100.0, lru=85.0, lfu=95.0), 0.10)
    assert name == "lru"
    assert "lru would have waited 85.0 s" in why
    assert "(15% less), beyond the 10% hysteresis" in why


def test_a_gain_within_the_hysteresis_keeps_the_current_strategy() -> None:
    name, why = choose_strategy("hybrid", table(hybrid=100.0, lru=91.0), 0.10)
    assert name == "hybrid"
    assert "within the 10% hysteresis" in why
    # exactly the hysteresis is not more than it
    assert choose_strategy("hybrid", table(hybrid=100.0, lru=90.0), 0.10)[0] == "hybrid"
    # zero hysteresis: any gain switches
    assert choose_strategy("hybrid", table(hybrid=100.0, lru=99.0), 0.0)[0] == "lru"


def test_a_tie_keeps_the_current_strategy_even_with_no_hysteresis() -> None:
    assert choose_strategy("lru", table(fifo=40.0, lru=40.0, lfu=40.0), 0.0)[0] == "lru"
    assert choose_strategy("lru", table(fifo=0.0, lru=0.0), 0.0) == (
        "lru",
        "lru waits least (0.0 s in total)",
    )


def test_the_best_of_several_wins_not_the_first_that_beats_the_current() -> None:
    assert choose_strategy("hybrid", table(hybrid=100.0, lru=80.0, lfu=50.0), 0.1)[0] == "lfu"


def test_an_empty_table_and_a_table_without_the_current_change_nothing() -> None:
    name, why = choose_strategy("hybrid", [], 0.1)
    assert (name, why.startswith("nothing to compare")) == ("hybrid", True)
    name, why = choose_strategy("hybrid", table(lru=1.0), 0.1)
    assert name == "hybrid"
    assert "not replayed" in why
