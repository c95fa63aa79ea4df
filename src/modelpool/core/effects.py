"""AsyncEffects: the scheduler's decisions carried out with tasks on the pool's loop.

Each slow effect (load, unload, offload, restore) runs as a task that calls the
backend, gathers the evidence the probe can give, and reports back to the scheduler
with one handler call. Nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from modelpool.config import ModelSpec
from modelpool.core.estimates import EstimateStore, plausible_footprint
from modelpool.core.events import EventKind, PoolEvent
from modelpool.core.lease import Lease, Waiter
from modelpool.core.memory_watch import (
    Sleep,
    confirm_release_across,
    measure_processes_across,
    total_across,
    used_across,
)
from modelpool.core.ports import (
    HOST,
    Backend,
    Clock,
    Handle,
    MemoryProbe,
    Placement,
    Reports,
    SpansDevices,
    WarmCapable,
    WatchesExit,
)
from modelpool.errors import ModelPoolError
from modelpool.types import Bytes, DeviceId, ModelId

log = logging.getLogger("modelpool")

MAX_ERROR_LINES = 40
_T = TypeVar("_T")

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
"""Runs a coroutine as a task the pool tracks (and waits for at stop)."""


class AsyncEffects:
    """The scheduler's ``Effects`` port, implemented with tasks and futures.

    Everything it needs is handed in: the backends by kind, how to find a model's spec,
    the probe and estimate store (evidence, both optional), the clock, how to run a task,
    where events and returned leases go. Its reports go to ``reports`` (the scheduler),
    attached with ``report_to`` once the scheduler exists, since each needs the other.
    """

    def __init__(
        self,
        backends: Mapping[str, Backend],
        spec_of: Callable[[ModelId], ModelSpec],
        *,
        spawn: Spawn,
        publish: Callable[[PoolEvent], None],
        release: Callable[[Lease], None],
        clock: Clock,
        probe: MemoryProbe | None = None,
        estimates: EstimateStore | None = None,
        confirms_release: Callable[[DeviceId], bool] = lambda device: False,
        release_timeout: float = 10.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._backends = backends
        self._spec_of = spec_of
        self._spawn_task = spawn
        self._publish = publish
        self._release = release
        self._clock = clock
        self._probe = probe
        self._estimates = estimates
        self._confirms_release = confirms_release
        self._release_timeout = release_timeout
        self._sleep = sleep
        self._reports: Reports | None = None
        self._watchers: dict[ModelId, asyncio.Task[None]] = {}
        self._loads: dict[ModelId, asyncio.Task[None]] = {}
        self._aborting = False

    def report_to(self, reports: Reports) -> None:
        self._reports = reports

    @property
    def reports(self) -> Reports:
        if self._reports is None:
            raise RuntimeError("AsyncEffects: report_to(scheduler) was not called")
        return self._reports

    # --- quick effects: run inline -------------------------------------------------

    def grant(self, waiter: Waiter, lease: Lease | None) -> None:
        future: asyncio.Future[Lease | None] = waiter.token
        if not future.done():
            future.set_result(lease)
        elif lease is not None:  # its caller left a moment ago: give the lease back
            asyncio.get_running_loop().call_soon(self._release, lease)

    def reject(self, waiter: Waiter, error: ModelPoolError) -> None:
        future: asyncio.Future[Lease | None] = waiter.token
        if not future.done():
            future.set_exception(error)

    def emit(self, event: PoolEvent) -> None:
        self._publish(event)

    # --- slow effects: tasks that report back --------------------------------------

    def start_load(self, spec: ModelSpec, placement: Placement) -> None:
        self._loads[spec.id] = self._spawn(self._load(spec, placement))

    def abort_loads(self) -> None:
        """A forced stop: loads in flight are cancelled (a backend stops what it started)
        and reported failed, so that the stop need not wait for their timeouts."""
        self._aborting = True
        for task in self._loads.values():
            task.cancel()

    def start_unload(self, handle: Handle, booked: Bytes = 0) -> None:
        self._stop_watching(handle.model_id)
        self._spawn(self._unload(handle, booked))

    def start_offload(self, handle: Handle) -> None:
        self._stop_watching(handle.model_id)
        self._spawn(self._offload(handle))

    def _stop_watching(self, model_id: ModelId) -> None:
        watcher = self._watchers.pop(model_id, None)
        if watcher is not None:
            watcher.cancel()  # the model is about to leave its device on purpose

    def start_restore(self, warm: Handle, device: DeviceId) -> None:
        self._stop_watching(warm.model_id)  # a sleeper that dies now fails its wake
        self._spawn(self._restore(warm, device))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._spawn_task(work)
        task.add_done_callback(_report_crash)
        return task

    def _backend(self, model_id: ModelId) -> Backend:
        return self._backends[self._spec_of(model_id).backend]

    async def _load(self, spec: ModelSpec, placement: Placement) -> None:
        started = self._clock()
        backend = self._backends[spec.backend]
        try:
            if len(placement.devices) > 1:
                # The config refuses ``devices`` for a backend that cannot span them.
                assert isinstance(backend, SpansDevices)
                handle = await backend.load_across(spec, placement)
            else:
                handle = await backend.load(spec, placement.device)
        except Exception as error:  # any backend failure: the model is FAILED, others go on
            self.reports.on_load_done(spec.id, None, describe(error), self._clock() - started)
            return
        except asyncio.CancelledError:
            if not self._aborting:
                raise
            reason = "the pool stopped while it loaded"
            self.reports.on_load_done(spec.id, None, reason, self._clock() - started)
            return
        finally:
            self._loads.pop(spec.id, None)
        self._loaded(spec, handle)
        self.reports.on_load_done(spec.id, handle, None, self._clock() - started)

    def _loaded(self, spec: ModelSpec, handle: Handle) -> None:
        """What every fresh handle goes through: measured, remembered, watched."""
        probe = self._probe
        if handle.footprint is None and handle.pids and probe is not None:
            # A server process says nothing of its memory: the probe measures its tree.
            # Unknown (None, or a failed probe) or implausible (0, more than the device
            # holds) keeps the estimate booked, and nothing is remembered.
            # A model across devices is measured on each of them, and summed.
            devices = handle.all_devices
            measured = _evidence(
                probe, lambda: measure_processes_across(probe, devices, handle.pids)
            )
            total = _evidence(probe, lambda: total_across(probe, devices)) if measured else None
            if plausible_footprint(measured, total):
                handle.footprint = measured
            elif measured is not None:
                log.warning(
                    "%s: measured %s bytes on %s, not plausible: the estimate stands",
                    spec.id, f"{measured:,}", ", ".join(devices),
                )  # fmt: skip
        if handle.footprint is not None and self._estimates is not None:
            self._estimates.record(spec, handle.footprint)
        backend = self._backends[spec.backend]
        if isinstance(backend, WatchesExit):  # watch first: on_load_done may unload it at once
            self._watchers[spec.id] = self._spawn(self._watch(handle, backend.wait_closed))

    async def _watch(self, handle: Handle, wait_closed: Callable[[Handle], Awaitable[str]]) -> None:
        try:
            reason = await wait_closed(handle)
        except Exception as error:
            reason = f"lost track of the model: {describe(error)}"
        if self._watchers.get(handle.model_id) is asyncio.current_task():
            del self._watchers[handle.model_id]
        self.reports.on_lost(handle.model_id, handle, reason)

    async def _unload(self, handle: Handle, booked: Bytes) -> None:
        # Only devices whose readings can confirm a release are read (and waited on);
        # ``booked`` is over all of a spread model's devices, and so is the wait.
        devices = handle.all_devices
        confirm = (
            booked
            and handle.device != HOST
            and all(self._confirms_release(device) for device in devices)
        )
        probe = self._probe if confirm else None
        before = None
        if probe is not None:
            before = _evidence(probe, lambda: used_across(probe, devices))
        try:
            await self._backend(handle.model_id).unload(handle)
        except Exception as error:
            self.reports.on_unload_done(handle.model_id, describe(error))
            return
        if probe is not None and before is not None:
            try:
                waited: float | None = await confirm_release_across(
                    probe, devices, before, booked, self._release_timeout,
                    clock=self._clock, sleep=self._sleep,
                )  # fmt: skip
            except Exception as error:  # no evidence: the unload stands on the backend's word
                log.warning("memory probe %s failed: %s", probe.name, describe(error))
                waited = 0.0
            if waited is None:
                reason = (
                    f"memory not seen coming back after unload within {self._release_timeout:g}s"
                )
                detail = {"device": ", ".join(devices), "reason": reason}
                self.emit(PoolEvent(EventKind.MEMORY_DRIFT, handle.model_id, self._clock(), detail))
        self.reports.on_unload_done(handle.model_id)

    async def _offload(self, handle: Handle) -> None:
        started = self._clock()
        try:
            backend = self._backend(handle.model_id)
            assert isinstance(backend, WarmCapable), "the scheduler offloads only these"
            warm = await backend.offload(handle)
        except Exception as error:
            elapsed = self._clock() - started
            self.reports.on_offload_done(handle.model_id, None, describe(error), elapsed)
            return
        if isinstance(backend, WatchesExit):  # a sleeping server process can still die
            self._watchers[handle.model_id] = self._spawn(self._watch(warm, backend.wait_closed))
        self.reports.on_offload_done(handle.model_id, warm, None, self._clock() - started)

    async def _restore(self, warm: Handle, device: DeviceId) -> None:
        spec = self._spec_of(warm.model_id)
        backend = self._backends[spec.backend]
        started = self._clock()
        try:
            assert isinstance(backend, WarmCapable), "only warm-capable backends offload"
            handle = await backend.restore(warm, device)
        except Exception as error:
            try:  # the contract: a failed restore's copy is freed by the pool
                await backend.unload(warm)
            except Exception as cleanup:
                log.warning("freeing the warm copy of %s failed: %s", warm.model_id, cleanup)
            elapsed = self._clock() - started
            self.reports.on_load_done(warm.model_id, None, describe(error), elapsed)
            return
        self._loaded(spec, handle)
        self.reports.on_load_done(warm.model_id, handle, None, self._clock() - started)


def _evidence(probe: MemoryProbe, read: Callable[[], _T]) -> _T | None:
    """What ``read`` gets from the probe, or None (unknown) if the probe fails: evidence
    is optional, and a load or unload must finish without it (NVML raises for a lost
    GPU, a refused permission, a driver older than the library)."""
    try:
        return read()
    except Exception as error:
        log.warning("memory probe %s failed: %s", probe.name, describe(error))
        return None


def _report_crash(task: asyncio.Task[None]) -> None:
    """Backend errors are reported to the scheduler; anything escaping is a bug: say so."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("modelpool internal error in %s", task.get_coro(), exc_info=error)


def describe(error: BaseException) -> str:
    """For users: the error's type and message (a backend's log tail included, bounded),
    never a traceback."""
    lines = str(error).strip().splitlines()[:MAX_ERROR_LINES]
    return f"{type(error).__name__}: " + "\n".join(lines) if lines else type(error).__name__
