"""A record's sub-states are checked like its states: set only where they mean something,
and never carried into a state where they do not."""

from __future__ import annotations

import pytest

from modelpool.config import ModelSpec
from modelpool.core.record import ModelRecord
from modelpool.core.states import SUB_STATES, TRANSITIONS, ModelState
from modelpool.errors import IllegalTransition


def record_in(state: ModelState) -> ModelRecord:
    record = ModelRecord(ModelSpec(id="m", backend="fake", memory=1, device="cpu"), 1)
    record.state = state  # placed there directly: the table is what is under test
    return record


def value_for(name: str) -> object:
    return "stopping" if name == "unload_requested" else True


@pytest.mark.parametrize("name", sorted(SUB_STATES))
@pytest.mark.parametrize("state", list(ModelState))
def test_a_sub_state_is_set_only_in_its_states(name: str, state: ModelState) -> None:
    record = record_in(state)
    if state in SUB_STATES[name]:
        setattr(record, name, value_for(name))
        assert getattr(record, name)
    else:
        with pytest.raises(IllegalTransition, match=f"{name} is not a sub-state of {state}"):
            setattr(record, name, value_for(name))
    setattr(record, name, None if name == "unload_requested" else False)  # clearing: always


@pytest.mark.parametrize("name", sorted(SUB_STATES))
def test_a_state_change_may_not_carry_a_sub_state_where_it_does_not_belong(name: str) -> None:
    for old in SUB_STATES[name]:
        for new in TRANSITIONS[old]:
            record = record_in(old)
            setattr(record, name, value_for(name))
            if new in SUB_STATES[name]:
                record.set_state(new)
                assert record.state is new
            else:
                with pytest.raises(IllegalTransition, match=f"with {name} still set"):
                    record.set_state(new)
                assert record.state is old
