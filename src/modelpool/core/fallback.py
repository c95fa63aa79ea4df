"""Fallbacks: which model serves a request when the one asked for cannot load.

A model whose config names a ``fallback`` hands a request over to that model when the
pool refuses it for a reason that says it cannot load now: its load failed
(``LoadFailed``; its circuit open, ``CircuitOpen``, is one) or the memory is not there
(``CapacityError``: it never fits, pinned models hold the room, ``max_models`` are
loaded and none can leave). A request that merely waited too long (``WaitTimeout``), met
a full queue, or met a stopping pool is refused as before: the model itself is fine.

One hop only: the fallback's own refusal is final (the config refuses chains). Pure:
``ModelPool.acquire`` asks, acquires, and publishes the ``fallback`` event.
"""

from __future__ import annotations

from modelpool.config import ModelSpec
from modelpool.errors import CapacityError, LoadFailed, ModelPoolError
from modelpool.types import ModelId

CANNOT_LOAD = (LoadFailed, CapacityError)
"""The refusals that send a request to the model's fallback."""


def fallback_for(spec: ModelSpec, error: ModelPoolError) -> ModelId | None:
    """The model (an id or alias) to serve a request for ``spec``'s model instead, now
    that the pool refused it with ``error``; None: the refusal stands."""
    if spec.fallback is None or spec.fallback == spec.id:
        return None
    if not isinstance(error, CANNOT_LOAD):
        return None
    return spec.fallback
