"""parse_duration / format_duration: seconds from what people write, and back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelpool.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        (0, 0.0),
        (600, 600.0),
        (1.5, 1.5),
        ("600", 600.0),
        ("2.5", 2.5),
        ("600s", 600.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        (" 10M ", 600.0),
    ],
)
def test_parse_duration(written: int | float | str, seconds: float) -> None:
    assert parse_duration(written) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["soon", "", "10 minutes", "h", "1x", "-5", "1h-30m", True])
def test_parse_duration_rejects_nonsense(bad: str | bool) -> None:
    with pytest.raises(ValueError, match=r"expected a duration such as 600, '10m' or '1h', got"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [-1, -0.5])
def test_parse_duration_rejects_negative_numbers(bad: float) -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_parse_duration_rejects_non_finite_numbers(bad: float) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5400, "1h30m"), (45, "45s"), (0.25, "250ms"), (1.5, "1.5s"), (86400, "1d")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=10**7))
def test_format_then_parse_round_trips_whole_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
def test_units_combine_additively(hours: int, minutes: int, seconds: int) -> None:
    text = f"{hours}h{minutes}m{seconds}s"
    assert parse_duration(text) == hours * 3600 + minutes * 60 + seconds
