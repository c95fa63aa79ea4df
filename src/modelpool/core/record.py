"""ModelRecord: everything the scheduler knows about one configured model."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from modelpool.config import ModelSpec
from modelpool.core.lease import Lease, Waiter
from modelpool.core.ports import Candidate, Handle, Placement
from modelpool.core.states import SUB_STATES, ModelState, check_sub_state, check_transition
from modelpool.core.stats import ModelStats
from modelpool.errors import Holder, IllegalTransition
from modelpool.types import Bytes, DeviceId, ModelId

ASSUMED_LOAD_BANDWIDTH = 1e9
"""Bytes/s used to guess a model's load cost before its first load is measured."""


@dataclass(slots=True, eq=False)
class ModelRecord:
    """One model's state. Owned and mutated by the scheduler alone."""

    spec: ModelSpec
    estimate: Bytes
    """Bytes to reserve for the next load: configured, or measured by an earlier load."""
    state: ModelState = ModelState.UNLOADED
    device: DeviceId | None = None
    """Where it is booked (LOADING, READY, UNLOADING); None when it holds nothing. For a
    model spread over several devices, the main one (``placement`` has them all)."""
    placement: Placement | None = None
    """Every device it is booked on and its share of each, while ``device`` is set."""
    handle: Handle | None = None
    warm: Handle | None = None
    """The host-RAM copy while WARM (and while it is being restored)."""
    leases: dict[int, Lease] = field(default_factory=dict)
    waiters: deque[Waiter] = field(default_factory=deque)
    """Requests waiting for this model to serve (a lease, or an explicit load)."""
    unload_waiters: list[Waiter] = field(default_factory=list)
    """Explicit unloads waiting for this model to be gone."""
    pinned: bool = False
    last_error: str | None = None
    failures: int = 0
    """Failed loads (or deaths) in a row; reset by a successful load."""
    retry_at: float = 0.0
    """Clock time before which a FAILED model is not loaded again (backoff)."""
    preloaded: int | None = None
    """The priority it was preloaded with, until a request uses it (None: not a preload)."""
    blocked_by: list[Holder] = field(default_factory=list)
    """Why its waiters wait, when they wait for memory (named in timeout errors)."""
    stats: ModelStats = field(default_factory=ModelStats)
    candidate_cache: tuple[tuple[int, int], Candidate] | None = None
    """The last ``candidate()``, valid while (stats version, lease count) is unchanged."""
    # Sub-states (``states.SUB_STATES`` says in which states each may be set), behind
    # properties that check it.
    _load_started: bool = False
    _offloading: bool = False
    _warm_dropping: bool = False
    _draining: bool = False
    _unload_requested: str | None = None

    @property
    def model_id(self) -> ModelId:
        return self.spec.id

    def set_state(self, new: ModelState) -> None:
        check_transition(self.spec.id, self.state, new)
        for name in SUB_STATES:
            if getattr(self, name) and new not in SUB_STATES[name]:
                raise IllegalTransition(
                    f"model {self.spec.id!r}: {self.state} -> {new} with {name} still set"
                )
        self.state = new

    def _checked(self, name: str, value: object) -> None:
        if value:
            check_sub_state(self.spec.id, self.state, name)

    @property
    def load_started(self) -> bool:
        """LOADING and the backend is at work (not just waiting for evictions to finish)."""
        return self._load_started

    @load_started.setter
    def load_started(self, value: bool) -> None:
        self._checked("load_started", value)
        self._load_started = value

    @property
    def offloading(self) -> bool:
        """UNLOADING toward WARM: the backend is copying the weights to host RAM."""
        return self._offloading

    @offloading.setter
    def offloading(self, value: bool) -> None:
        self._checked("offloading", value)
        self._offloading = value

    @property
    def warm_dropping(self) -> bool:
        """WARM, and its host copy is being freed (then UNLOADED)."""
        return self._warm_dropping

    @warm_dropping.setter
    def warm_dropping(self, value: bool) -> None:
        self._checked("warm_dropping", value)
        self._warm_dropping = value

    @property
    def draining(self) -> bool:
        """No new leases: it is to leave (a starving request needs its memory, or an
        explicit unload waits for its leases)."""
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._checked("draining", value)
        self._draining = value

    @property
    def unload_requested(self) -> str | None:
        """Why it must be unloaded as soon as its leases are back (explicit unload, stop)."""
        return self._unload_requested

    @unload_requested.setter
    def unload_requested(self, value: str | None) -> None:
        self._checked("unload_requested", value)
        self._unload_requested = value

    @property
    def devices(self) -> tuple[DeviceId, ...]:
        """The devices it is booked on (none when it holds nothing)."""
        return self.placement.devices if self.placement is not None else ()

    @property
    def serving(self) -> bool:
        """Grants new leases right away."""
        return self.state is ModelState.READY and not self.draining

    @property
    def task_ids(self) -> list[str]:
        return [lease.task_id or f"lease-{lease.lease_id}" for lease in self.leases.values()]

    def candidate(self) -> Candidate:
        """What policies see of this model, cached until its stats or leases change
        (a decision looks at every resident model, so this must be cheap)."""
        stats = self.stats
        key = (stats.version, len(self.leases))
        cached = self.candidate_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        priority = self.spec.priority
        for lease in self.leases.values():  # a lease for urgent work makes it urgent
            priority = min(priority, lease.priority)
        load_seconds = (
            stats.load_seconds_total / stats.load_count
            if stats.load_count
            else self.estimate / ASSUMED_LOAD_BANDWIDTH
        )
        frequency, counted_at = stats.frequency_counted
        candidate = Candidate(
            self.spec.id, self.estimate, priority, stats.last_used, stats.loaded_at,
            stats.load_count, stats.requests, len(self.leases), stats.errors, load_seconds,
            self.spec.tags, frequency, counted_at,
        )  # fmt: skip
        self.candidate_cache = (key, candidate)
        return candidate
