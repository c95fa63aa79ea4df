"""Leases: what a caller holds while it uses a model, and what waits for one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from modelpool.core.ports import Handle
from modelpool.types import DeviceId, ModelId


class LeaseOptions(TypedDict, total=False):
    """How a lease is asked for: the one signature of ``use``, ``acquire`` and ``use_sync``."""

    task_id: str | None
    """Who holds it (``deallocate_model(task_id)`` gives back every lease of a task)."""
    priority: int | None
    """Lower is more important, as in the seed API; None: the model's own priority."""
    timeout: float | None
    """Seconds to wait for a load; None: the pool's ``wait_timeout``."""
    key: str | None
    """Sticky routing key: the same key always sees one version of a model in a split."""


@dataclass(slots=True, eq=False)
class Lease:
    """A model pinned in memory for one task; return it and the model may be evicted."""

    lease_id: int
    model_id: ModelId
    task_id: str | None
    priority: int
    device: DeviceId
    handle: Handle
    granted_at: float
    hit: bool
    """True when the model was already resident: the request did not wait for a load."""
    released: bool = False

    @property
    def endpoint(self) -> str | None:
        """Base URL of the model's OpenAI-compatible server (process backends)."""
        return self.handle.endpoint

    @property
    def obj(self) -> Any:
        """The loaded object (in-process backends)."""
        return self.handle.obj


@dataclass(slots=True, eq=False)
class Waiter:
    """A request the scheduler could not answer at once.

    ``token`` is the shell's (a future); the scheduler only passes it back through
    ``Effects.grant``/``Effects.reject``. ``wants_lease`` is False for an explicit
    load or unload, which waits for an outcome but holds nothing afterwards.
    """

    waiter_id: int
    model_id: ModelId
    task_id: str | None
    priority: int
    enqueued_at: float
    token: Any = None
    wants_lease: bool = True
