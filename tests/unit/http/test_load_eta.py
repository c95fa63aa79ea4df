"""A 503's ``Retry-After`` after a wait for a load: when that load should be over."""

from __future__ import annotations

import pytest

from modelpool.core.record import ASSUMED_LOAD_BANDWIDTH
from modelpool.http.load_eta import SOONEST, expected_load_seconds, seconds_until_loaded


def test_the_expected_load_is_the_mean_of_those_measured() -> None:
    assert expected_load_seconds(total_seconds=30.0, loads=3, size=10**12) == 10.0


def test_a_model_never_loaded_is_guessed_from_its_size() -> None:
    size = 4 * 10**9
    assert expected_load_seconds(0.0, 0, size) == size / ASSUMED_LOAD_BANDWIDTH


def test_the_time_a_load_has_run_is_taken_off() -> None:
    assert seconds_until_loaded(10.0, started_at=100.0, now=103.0) == pytest.approx(7.0)


def test_a_load_not_begun_has_its_whole_length_ahead() -> None:
    assert seconds_until_loaded(10.0, started_at=None, now=103.0) == 10.0


def test_a_load_past_its_estimate_may_end_any_moment() -> None:
    assert seconds_until_loaded(10.0, started_at=100.0, now=130.0) == SOONEST
    assert seconds_until_loaded(0.001, started_at=None, now=0.0) == SOONEST
