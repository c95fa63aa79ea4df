"""``fallback_for``: which refusals hand a request to the model's fallback. Pure."""

from __future__ import annotations

import pytest

from modelpool.config import ModelSpec
from modelpool.core.fallback import fallback_for
from modelpool.errors import (
    CircuitOpen,
    DoesNotFit,
    Holder,
    InsufficientMemory,
    LoadFailed,
    ModelLimitReached,
    ModelPoolError,
    PoolClosed,
    QueueFull,
    UnknownModel,
    WaitTimeout,
)

GB = 10**9
LOCAL = ModelSpec(id="local", backend="fake", memory=GB, fallback="far")
HOLDERS = [Holder("pinned-one", GB, "pinned")]

CANNOT_LOAD: list[ModelPoolError] = [
    LoadFailed("local", "exited with 1 during start"),
    LoadFailed("local", "exited with 1 during start", retry_after=2.0),  # backing off
    CircuitOpen("local", "exited with 1 during start", 5),
    DoesNotFit("local", "cuda:0", 20 * GB, 16 * GB),
    InsufficientMemory("local", "cuda:0", 8 * GB, GB, HOLDERS),
    ModelLimitReached("local", "the pool", 2, HOLDERS),
]
COULD_LOAD: list[ModelPoolError] = [
    WaitTimeout("local", 300.0, "loading"),
    QueueFull("local", 16),
    PoolClosed("the pool is stopping; no new requests"),
    UnknownModel("local", ["far"]),
]


@pytest.mark.parametrize("error", CANNOT_LOAD, ids=lambda e: type(e).__name__)
def test_a_model_that_cannot_load_goes_to_its_fallback(error: ModelPoolError) -> None:
    assert fallback_for(LOCAL, error) == "far"


@pytest.mark.parametrize("error", COULD_LOAD, ids=lambda e: type(e).__name__)
def test_a_refusal_that_says_nothing_of_the_model_stands(error: ModelPoolError) -> None:
    assert fallback_for(LOCAL, error) is None


def test_a_model_without_a_fallback_has_none() -> None:
    plain = LOCAL.model_copy(update={"fallback": None})
    assert fallback_for(plain, LoadFailed("local", "boom")) is None


def test_a_model_never_falls_back_to_itself() -> None:
    itself = LOCAL.model_copy(update={"fallback": "local"})  # past the config's check
    assert fallback_for(itself, LoadFailed("local", "boom")) is None
