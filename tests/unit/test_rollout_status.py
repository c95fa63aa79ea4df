"""A rollout operation's status moves only along its transition table."""

from __future__ import annotations

import itertools

import pytest

from modelpool.errors import IllegalTransition
from modelpool.rollout import Operation, Status, Strategy, make_plan
from modelpool.rollout.operation import ENDED, TRANSITIONS, check_transition

LEGAL = {
    (Status.PENDING, Status.RUNNING),
    (Status.PENDING, Status.FAILED),
    (Status.PENDING, Status.ABORTED),
    (Status.PENDING, Status.ROLLED_BACK),
    (Status.RUNNING, Status.COMPLETED),
    (Status.RUNNING, Status.ROLLED_BACK),
    (Status.RUNNING, Status.ABORTED),
}
EVERY_PAIR = list(itertools.product(Status, Status))


def operation(status: Status = Status.PENDING) -> Operation:
    return Operation(
        id="op-1",
        model="chat",
        source="v1",
        target="v2",
        strategy=Strategy.CANARY,
        settings={},
        plan=make_plan(Strategy.CANARY),
        created=0.0,
        status=status,
    )


def test_the_table_is_exactly_the_moves_the_manager_makes() -> None:
    table = {(old, new) for old, targets in TRANSITIONS.items() for new in targets}
    assert table == LEGAL
    assert set(TRANSITIONS) == set(Status)


@pytest.mark.parametrize(("old", "new"), sorted(LEGAL))
def test_every_legal_move_is_allowed(old: Status, new: Status) -> None:
    check_transition("op-1", old, new)
    op = operation(old)
    op.move_to(new)
    assert op.status is new


@pytest.mark.parametrize(("old", "new"), [pair for pair in EVERY_PAIR if pair not in LEGAL])
def test_every_other_move_is_refused_and_leaves_the_status(old: Status, new: Status) -> None:
    with pytest.raises(IllegalTransition, match=f"rollout op-1: illegal transition {old} -> {new}"):
        check_transition("op-1", old, new)
    op = operation(old)
    with pytest.raises(IllegalTransition):
        op.move_to(new)
    assert op.status is old


def test_ended_states_go_nowhere_and_every_other_state_can_end() -> None:
    assert all(not TRANSITIONS[status] for status in ENDED)
    for status in set(Status) - ENDED:
        reachable, frontier = set(), {status}
        while frontier:
            reachable |= frontier
            frontier = {n for s in frontier for n in TRANSITIONS[s]} - reachable
        assert reachable & ENDED, f"{status} can never end"
