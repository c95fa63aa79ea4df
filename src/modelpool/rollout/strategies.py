"""The four ways a rollout moves traffic, each turned into a plan of steps.

A ``Plan`` is the target version's share of traffic at each step and how long each
step lasts. It is computed once from the strategy's settings, which may be written the
way seed 003 writes them (``initial_percentage``, ``evaluation_period_minutes``) or
with durations (``period: 30s``). Pure: no clock, no I/O.

- ``immediate``: one step, 100 %, as soon as the target is loaded; no watch.
- ``gradual``: ``steps`` equal steps up to 100 % over ``duration``.
- ``ab``: ``percentage`` of traffic for ``duration``; then the test is over and traffic
  goes back to the source (``then: revert``) or all to the target (``then: promote``).
- ``canary``: ``initial_percentage``, then ``step_percentage`` more after each
  ``period`` while the target is healthy, up to 100 % held for one more period.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from modelpool.durations import parse_duration


class Strategy(StrEnum):
    IMMEDIATE = "immediate"
    GRADUAL = "gradual"
    AB = "ab"
    CANARY = "canary"


@dataclass(frozen=True)
class Plan:
    """The target's share at each step (0..1] and the seconds each step is held."""

    shares: tuple[float, ...]
    period: float
    guarded: bool
    """Watched by the health monitor: a critical target rolls back."""
    then: Literal["promote", "revert"] = "promote"
    """After the last step: all traffic to the target, or back to the source."""
    hold_on_warning: bool = False
    """Do not step up while the target is at ``warning`` (canary)."""


class PlanError(ValueError):
    """A strategy's settings are wrong; ``problems`` says each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# Each setting: what it may also be written as (seed 003's names) and how to read it.
_Reader = Callable[[Any], float]


def _percent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        raise ValueError(f"expected a percentage in (0, 100], got {value!r}")
    return float(value) / 100.0


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration such as 30, '30s' or '10m', got {value!r}")
    return parse_duration(value)


def _scaled(unit: float) -> _Reader:
    def read(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"expected a number >= 0, got {value!r}")
        return float(value) * unit

    return read


def _count(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ValueError(f"expected a whole number of steps from 1 to 1000, got {value!r}")
    return float(value)


# setting -> (canonical name, reader); several spellings may share a canonical name.
_SETTINGS: dict[Strategy, dict[str, tuple[str, _Reader]]] = {
    Strategy.IMMEDIATE: {},
    Strategy.GRADUAL: {
        "steps": ("steps", _count),
        "duration": ("duration", _seconds),
        "duration_minutes": ("duration", _scaled(60)),
    },
    Strategy.AB: {
        "percentage": ("share", _percent),
        "traffic_percentage": ("share", _percent),
        "duration": ("duration", _seconds),
        "test_duration_hours": ("duration", _scaled(3600)),
        "test_duration_minutes": ("duration", _scaled(60)),
    },
    Strategy.CANARY: {
        "initial_percentage": ("initial", _percent),
        "step_percentage": ("step", _percent),
        "period": ("period", _seconds),
        "evaluation_period": ("period", _seconds),
        "evaluation_period_minutes": ("period", _scaled(60)),
    },
}
_DEFAULTS: dict[Strategy, dict[str, float]] = {
    Strategy.IMMEDIATE: {},
    Strategy.GRADUAL: {"steps": 5, "duration": 300.0},
    Strategy.AB: {"share": 0.5, "duration": 3600.0},
    Strategy.CANARY: {"initial": 0.05, "step": 0.15, "period": 300.0},
}


def parse_strategy(name: str | Strategy) -> Strategy:
    try:
        return Strategy(name)
    except ValueError:
        known = [str(s) for s in Strategy]
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PlanError([f"unknown strategy {name!r}{hint}; known: {', '.join(known)}"]) from None


def make_plan(strategy: str | Strategy, settings: Mapping[str, Any] | None = None) -> Plan:
    """The plan for ``strategy`` with ``settings``; ``PlanError`` lists every problem."""
    kind = parse_strategy(strategy)
    accepted = _SETTINGS[kind]
    values = dict(_DEFAULTS[kind])
    problems: list[str] = []
    then: Literal["promote", "revert"] = "revert"
    for key, raw in (settings or {}).items():
        if kind is Strategy.AB and key == "then":
            if raw not in ("promote", "revert"):
                problems.append(f"then: expected 'promote' or 'revert', got {raw!r}")
            else:
                then = raw
            continue
        if key not in accepted:
            known = [*accepted, *(["then"] if kind is Strategy.AB else [])]
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            takes = ", ".join(known) if known else "no settings"
            problems.append(f"{key}: not a setting of {kind}{hint}; it takes {takes}")
            continue
        name, read = accepted[key]
        try:
            values[name] = read(raw)
        except ValueError as error:
            problems.append(f"{key}: {error}")
    if problems:
        raise PlanError(problems)
    if kind is Strategy.IMMEDIATE:
        return Plan((1.0,), 0.0, guarded=False)
    if kind is Strategy.GRADUAL:
        steps = int(values["steps"])
        shares = tuple(k / steps for k in range(1, steps + 1))
        return Plan(shares, values["duration"] / steps, guarded=True)
    if kind is Strategy.AB:
        return Plan((values["share"],), values["duration"], guarded=True, then=then)
    shares_list = [values["initial"]]
    while shares_list[-1] < 1.0:
        shares_list.append(min(1.0, round(shares_list[-1] + values["step"], 9)))
    return Plan(tuple(shares_list), values["period"], guarded=True, hold_on_warning=True)
