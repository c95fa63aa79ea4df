"""How a model is spread over devices and copies: ``devices``, ``split``, ``replicas``.

A model normally lives on one device (``device``). ``devices: 2`` spans any two
devices (or ``devices: [cuda:0, cuda:1]`` those two) with ``split`` the share of its
memory on each (default: by free memory). ``replicas`` serves one model id with
several loaded copies, each a pool record of its own (``id#1``, ``id#2``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from modelpool.config.fields import BudgetDevice
from modelpool.config.issues import Loc

DeviceCount = Annotated[int, Field(ge=1, le=64)]
DeviceList = Annotated[tuple[BudgetDevice, ...], Field(min_length=1, max_length=64)]
Share = Annotated[float, Field(gt=0)]


class ReplicaSettings(BaseModel):
    """``replicas: {min: 1, max: 4, target_inflight: 8}``; ``replicas: 2`` is a fixed
    count, ``{min: 2, max: 2}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: int = Field(default=1, ge=1, le=64)
    max: int = Field(default=1, ge=1, le=64)
    target_inflight: int = Field(default=4, ge=1)
    """Another copy is started when every copy has more than this many requests in flight."""

    @model_validator(mode="before")
    @classmethod
    def _count(cls, data: Any) -> Any:
        # "replicas: 2" is a fixed count, the obvious meaning of a bare number.
        if isinstance(data, int) and not isinstance(data, bool):
            return {"min": data, "max": data}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


def _distinct(devices: object) -> object:
    if isinstance(devices, list | tuple):
        seen: set[object] = set()
        for device in devices:
            if device in seen:
                raise ValueError(f"{device!r} is listed twice: a model uses each device once")
            seen.add(device)
    return devices


Devices = DeviceCount | Annotated[DeviceList, BeforeValidator(_distinct)]
"""How many devices a model spans (any that fit), or exactly which."""


def device_count(devices: int | tuple[str, ...] | None) -> int:
    """How many devices a model with ``devices`` uses (one when not given)."""
    if devices is None:
        return 1
    return devices if isinstance(devices, int) else len(devices)


def split_problem(devices: int | tuple[str, ...] | None, split: tuple[float, ...]) -> str | None:
    """Why ``split`` does not go with ``devices`` (None: it does)."""
    count = device_count(devices)
    if count == 1 and devices is None:
        return "a split needs 'devices' (how many devices, or which) to split over"
    if len(split) != count:
        return f"{len(split)} shares for {count} devices: give one share per device"
    return None


def spanning_problems(
    devices: int | tuple[str, ...] | None,
    backend: str,
    spans: bool | None,
    budgets: Mapping[str, int],
) -> list[tuple[Loc, str]]:
    """What is wrong with a model's ``devices`` (and so its ``split``) for its backend
    and the pool's budgets, each at its key. ``spans``: whether the backend can load one
    model across devices (None: not known, its code was not imported)."""
    problems: list[tuple[Loc, str]] = []
    if device_count(devices) > 1 and spans is False:
        # A split comes only with devices (split_problem), so devices names both.
        problems.append(
            (
                ("devices",),
                f"backend {backend!r} cannot spread one model over several devices (it has "
                "no load_across); place the model on one device",
            )
        )
    if not budgets:
        return problems
    has = ", ".join(sorted(budgets))
    if isinstance(devices, tuple):
        for index, device in enumerate(devices):
            if device not in budgets:
                message = (
                    f"no budget for device {device!r} in pool.budgets (has: {has}); add one "
                    "or list another device"
                )
                problems.append((("devices", index), message))
    elif isinstance(devices, int) and devices > len(budgets):
        message = (
            f"the model spans {devices} devices but pool.budgets has {len(budgets)} "
            f"({has}): it could never load; lower devices or add budgets"
        )
        problems.append((("devices",), message))
    return problems


def capacity(
    devices: int | tuple[str, ...], budgets: Mapping[str, int]
) -> tuple[int, list[str]] | None:
    """The most memory a model across ``devices`` could ever have, and which budgets
    that is (None: a device has no budget, or too few budgets: reported elsewhere)."""
    if isinstance(devices, int):
        if devices > len(budgets):
            return None
        names = sorted(budgets, key=lambda name: budgets[name], reverse=True)[:devices]
    else:
        if any(device not in budgets for device in devices):
            return None
        names = list(devices)
    return sum(budgets[name] for name in names), names


__all__ = [
    "Devices",
    "ReplicaSettings",
    "Share",
    "capacity",
    "device_count",
    "spanning_problems",
    "split_problem",
]
