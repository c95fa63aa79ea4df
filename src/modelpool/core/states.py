"""A model's lifecycle: the states and the only transitions allowed between them.

    UNLOADED → LOADING → READY → UNLOADING → UNLOADED
    LOADING → FAILED (load error);  FAILED → LOADING (retry) or UNLOADED
    READY → FAILED (died on its own)
    UNLOADING → WARM (offloaded to host RAM);  WARM → LOADING (restore)
    WARM → UNLOADED (its copy dropped);  LOADING → WARM (restore given up)

READY → FAILED is a model that died on its own (its process exited). An eviction
goes through UNLOADING either way; it ends in WARM when the weights were offloaded to
host RAM instead of freed. LOADING → WARM is a restore given up before it began.

Leases are counted on READY models (a READY model with leases out is "in use");
they are not a state of their own.
"""

from __future__ import annotations

from enum import StrEnum

from modelpool.errors import IllegalTransition
from modelpool.types import ModelId


class ModelState(StrEnum):
    UNLOADED = "unloaded"
    """Not in memory; loadable on demand."""
    LOADING = "loading"
    """Memory reserved, the backend is loading it (or evictions it needs are running)."""
    READY = "ready"
    """Resident on its device and serving; memory committed."""
    WARM = "warm"
    """Weights held in host RAM, off the device; restorable faster than a cold load."""
    UNLOADING = "unloading"
    """The backend is releasing it; its memory counts until the unload is done."""
    FAILED = "failed"
    """The last load or unload failed, or the model died; the next request tries again."""


TRANSITIONS: dict[ModelState, frozenset[ModelState]] = {
    ModelState.UNLOADED: frozenset({ModelState.LOADING}),
    ModelState.LOADING: frozenset(
        {ModelState.READY, ModelState.FAILED, ModelState.UNLOADED, ModelState.WARM}
    ),
    ModelState.READY: frozenset({ModelState.UNLOADING, ModelState.FAILED}),
    ModelState.WARM: frozenset({ModelState.LOADING, ModelState.UNLOADED}),
    ModelState.UNLOADING: frozenset({ModelState.UNLOADED, ModelState.FAILED, ModelState.WARM}),
    ModelState.FAILED: frozenset({ModelState.LOADING, ModelState.UNLOADED}),
}

SUB_STATES: dict[str, frozenset[ModelState]] = {
    # LOADING, and the backend is at work (not just waiting for its victims to leave).
    "load_started": frozenset({ModelState.LOADING}),
    # UNLOADING toward WARM: the weights are being copied to host RAM.
    "offloading": frozenset({ModelState.UNLOADING}),
    # WARM, and its host copy is being freed (then UNLOADED).
    "warm_dropping": frozenset({ModelState.WARM}),
    # No new leases: it is to leave (a starving request needs its memory, or an
    # explicit unload waits for its leases).
    "draining": frozenset({ModelState.READY, ModelState.UNLOADING}),
    # It must leave as soon as it can (an explicit unload, the pool stopping).
    "unload_requested": frozenset(
        {ModelState.LOADING, ModelState.READY, ModelState.UNLOADING, ModelState.WARM}
    ),
}
"""A record's sub-states (flags on ``ModelRecord``) and the states each may be set in:
setting one elsewhere, or leaving the state with one still set where it may not stay,
is a bug, raised as ``IllegalTransition`` like a transition the table forbids."""

RESIDENT = frozenset({ModelState.LOADING, ModelState.READY, ModelState.UNLOADING})
"""States in which a model holds (or is about to hold) device memory."""


def check_transition(model_id: ModelId, old: ModelState, new: ModelState) -> None:
    """Raise ``IllegalTransition`` unless ``old -> new`` is in the table."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"model {model_id!r}: illegal transition {old} -> {new}")


def check_sub_state(model_id: ModelId, state: ModelState, name: str) -> None:
    """Raise ``IllegalTransition`` unless sub-state ``name`` may be set in ``state``."""
    if state not in SUB_STATES[name]:
        raise IllegalTransition(f"model {model_id!r}: {name} is not a sub-state of {state}")
