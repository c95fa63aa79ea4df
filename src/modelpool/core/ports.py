"""The core's only windows on the world: small Protocols and the data they carry.

The scheduler decides; everything slow or outside (backends, memory probes, timers,
futures) sits behind one of these. Tests drive the core with recording fakes of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from modelpool.core.handle import HOST as HOST
from modelpool.core.handle import Handle as Handle
from modelpool.core.handle import Placement as Placement
from modelpool.types import Bytes, DeviceId, ModelId

if TYPE_CHECKING:
    from pathlib import Path

    from modelpool.config import ModelSpec
    from modelpool.core.events import PoolEvent
    from modelpool.core.lease import Lease, Waiter
    from modelpool.errors import ModelPoolError

Clock = Callable[[], float]
"""Monotonic seconds; ``time.monotonic`` by default, a manual clock in tests."""


# --- eviction policies --------------------------------------------------------------


class Candidate(NamedTuple):
    """What a policy may know about one resident model when choosing victims.

    A NamedTuple rather than a dataclass, and nothing in it changes with time alone
    (frequency is stored with the time it was counted): a decision looks at every
    resident model, so the scheduler keeps each model's candidate cached until the
    model's stats change.
    """

    model_id: ModelId
    bytes: Bytes
    priority: int = 5
    """Lower is more important (seed API: 1 = critical, 10 = background)."""
    last_used: float = 0.0
    """Clock time of the last lease returned (or granted), in seconds."""
    loaded_at: float = 0.0
    load_count: int = 0
    use_count: int = 0
    """Requests served since the pool started."""
    current_tasks: int = 0
    error_count: int = 0
    load_seconds: float = 0.0
    """Measured seconds to load this model again (an estimate before its first load)."""
    tags: tuple[str, ...] = ()
    frequency: float = 0.0
    """Recent demand: requests, each weighted by 2^(-age / half-life), as counted at
    ``frequency_at``. Compare candidates with ``aged_frequency(c, now)``."""
    frequency_at: float = 0.0


@dataclass(frozen=True, slots=True)
class EvictionContext:
    """The question a policy answers: free ``need`` bytes, as of ``now``."""

    need: Bytes
    now: float
    demand: Mapping[str, float] = field(default_factory=dict)
    """Recent demand per task type/tag (weights sum to 1 when any), for specialization."""


@runtime_checkable
class EvictionPolicy(Protocol):
    """Chooses which resident models to unload. Pure: no I/O, no logging, no clock.

    ``victims`` returns distinct ids taken from ``candidates`` in the order they should
    go, stopping as soon as their bytes add up to ``context.need``. If all candidates
    together free less than that, it returns all of them, still in order.
    """

    name: str

    def victims(
        self, candidates: Sequence[Candidate], context: EvictionContext
    ) -> list[ModelId]: ...


# --- backends -----------------------------------------------------------------------


@runtime_checkable
class WarmCapable(Protocol):
    """A backend with a warm tier: in-process weights in host RAM, a server asleep, or a
    stopped server's model file kept in the page cache.

    ``offload`` moves the weights to host RAM and frees the device, returning a *warm
    handle* (device ``HOST``, footprint = host bytes held); on failure it raises and the
    model is still usable where it was. ``restore`` brings them back; on failure it
    raises and the pool frees the copy with ``unload(warm)``. ``unload`` accepts warm
    handles too (it drops the host copy).
    """

    async def offload(self, handle: Handle) -> Handle: ...

    async def restore(self, warm: Handle, device: DeviceId) -> Handle: ...


@runtime_checkable
class OffloadsSome(Protocol):
    """A warm-capable backend where only some models can go warm (a server process
    that declares how to sleep and wake, or keeps its model file cached): the pool asks
    it per model."""

    def can_offload(self, spec: ModelSpec) -> bool: ...


@runtime_checkable
class SizesWarmCopies(Protocol):
    """A warm-capable backend whose warm copy is not the size of the model on its device
    (a server stopped with its model file kept in the page cache holds the file's bytes,
    not its KV cache): the warm tier books that size from the start of the offload."""

    def warm_bytes(self, spec: ModelSpec) -> Bytes | None:
        """Host bytes a warm copy of ``spec`` will hold (None: as on its device)."""
        ...


def warm_bytes(backend: object, spec: ModelSpec) -> Bytes | None:
    """What ``backend`` says a warm copy of ``spec`` holds; None when it does not say."""
    return backend.warm_bytes(spec) if isinstance(backend, SizesWarmCopies) else None


def can_offload(backend: object, spec: ModelSpec) -> bool:
    """Whether ``spec``'s models may go to the warm tier: its backend is ``WarmCapable``
    and, when it answers per model (``OffloadsSome``), says yes for this one."""
    if not isinstance(backend, WarmCapable):
        return False
    return backend.can_offload(spec) if isinstance(backend, OffloadsSome) else True


@runtime_checkable
class Backend(Protocol):
    """Loads and unloads models of one kind. Slow methods are coroutines.

    Optional capabilities, each a protocol of its own below that the pool checks with
    ``isinstance``: ``Estimating``, ``WatchesExit``, ``KeepsState``, ``Closes``, ``KeepsLogs`` and
    ``WarmCapable`` (the warm tier; per model with ``OffloadsSome``). And
    ``options_model``: a pydantic model the config checks a model's options against.
    """

    async def load(self, spec: ModelSpec, device: DeviceId) -> Handle: ...

    async def unload(self, handle: Handle) -> None: ...


@runtime_checkable
class SpansDevices(Protocol):
    """A backend that can load one model across several devices (``devices: 2``):
    llama.cpp's ``--tensor-split``, vLLM's tensor parallelism. The handle it returns
    lists them all in ``Handle.devices``."""

    async def load_across(self, spec: ModelSpec, placement: Placement) -> Handle: ...


@runtime_checkable
class Estimating(Protocol):
    """A backend that can guess a model's memory before its first load."""

    def estimate(self, spec: ModelSpec) -> Bytes | None: ...


@runtime_checkable
class WatchesExit(Protocol):
    """A backend whose loaded models can stop on their own (a process that exits)."""

    async def wait_closed(self, handle: Handle) -> str:
        """Return, with the reason, once the model has stopped; the pool marks it FAILED."""
        ...


@runtime_checkable
class KeepsState(Protocol):
    """A backend that keeps files in the pool's state dir (the process backend's pid
    records, from which it reaps the servers an earlier run left behind)."""

    async def open(self, state_dir: Path) -> None: ...


@runtime_checkable
class Closes(Protocol):
    """A backend that holds something of its own besides its models (the process
    backend's standby interpreters): the pool closes it as it stops, once every model
    is unloaded."""

    async def close(self) -> None: ...


@runtime_checkable
class Prepares(Protocol):
    """A backend whose first load would pay for slow imports (torch: seconds): the pool
    runs ``prepare`` in a worker thread when it starts, behind serving, so that the first
    request pays only for its load."""

    def prepare(self) -> None: ...


@runtime_checkable
class KeepsLogs(Protocol):
    """A backend that keeps what its models printed (a server process's output)."""

    def log_tail(self, handle: Handle, lines: int) -> Sequence[str]: ...

    def log_since(self, handle: Handle, count: int) -> tuple[Sequence[str], int]:
        """The lines printed after the ``count``-th, and the count to ask from next."""
        ...

    def log_note(self, handle: Handle, text: str) -> None:
        """Add ``text`` to the model's log, marked as modelpool's (not the server's)."""
        ...


# --- memory probes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """What a probe observed on one device, in bytes."""

    device: DeviceId
    total: Bytes
    used: Bytes

    @property
    def free(self) -> Bytes:
        return max(0, self.total - self.used)


@runtime_checkable
class MemoryProbe(Protocol):
    """Evidence of memory use. The ledger is the plan; a probe says what really is."""

    name: str

    def read(self, device: DeviceId) -> MemoryReading | None: ...


@runtime_checkable
class MeasuresProcesses(Protocol):
    """A probe that can tell what given processes hold on a device."""

    def process_bytes(self, device: DeviceId, pids: Sequence[int]) -> Bytes | None:
        """The bytes ``pids`` and their children hold on ``device`` (None: cannot tell)."""
        ...


# --- the scheduler's side effects ---------------------------------------------------


class Effects(Protocol):
    """Everything the scheduler asks the world to do; it never does it itself.

    The pool's async shell implements these with tasks, futures and timers; unit tests
    implement them with a recorder and call the scheduler's handlers directly.
    """

    def start_load(self, spec: ModelSpec, placement: Placement) -> None:
        """Begin loading; report back with ``Scheduler.on_load_done``."""

    def start_unload(self, handle: Handle, booked: Bytes = 0) -> None:
        """Begin unloading (or dropping a warm copy); report back with
        ``Scheduler.on_unload_done``. ``booked``: the bytes the ledger holds for it on its
        device, which a probe may watch come back (0 for a warm copy)."""

    def start_offload(self, handle: Handle) -> None:
        """Begin moving a model to host RAM; report back with ``Scheduler.on_offload_done``."""

    def start_restore(self, warm: Handle, device: DeviceId) -> None:
        """Begin moving a warm copy back to ``device``; report with ``on_load_done``."""

    def grant(self, waiter: Waiter, lease: Lease | None) -> None:
        """Answer a waiting request: its lease, or None when it asked for no lease."""

    def reject(self, waiter: Waiter, error: ModelPoolError) -> None:
        """Fail the request that was waiting."""

    def emit(self, event: PoolEvent) -> None:
        """Publish something that happened (for logs, metrics, the dashboard)."""


class Reports(Protocol):
    """Where slow work reports back: the scheduler's handlers, called on the pool's loop."""

    def on_load_done(
        self, model_id: ModelId, handle: Handle | None, error: str | None, seconds: float
    ) -> None: ...

    def on_unload_done(self, model_id: ModelId, error: str | None = None) -> None: ...

    def on_offload_done(
        self, model_id: ModelId, warm: Handle | None, error: str | None, seconds: float
    ) -> None: ...

    def on_lost(self, model_id: ModelId, handle: Handle, reason: str) -> None: ...


# --- traffic between a model's versions ----------------------------------------------


class Traffic(Protocol):
    """Where a request for a model goes, and how it went: the rollout's side of the pool.

    ``ModelPool.set_traffic`` installs one; without it a request for a model goes to
    the model's base version. Both methods run on the pool's loop and must not block.
    """

    def route(self, name: str, key: str | None) -> str:
        """The name to serve a request for ``name``: ``model@version`` for a model with
        versions, ``name`` itself otherwise. ``key`` (a user, a session) makes it sticky."""

    def record(self, model_id: ModelId, seconds: float, ok: bool) -> None:
        """A lease on ``model_id`` came back after ``seconds``; ``ok=False``: it failed."""
