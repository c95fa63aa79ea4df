"""AsyncEffects on its own: no pool, no scheduler, a fake backend and a recording report.

Each slow effect runs as a task, calls the backend, gathers what evidence the probe
gives, and reports back once; these tests read the reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelpool import FakeBackend, StaticProbe
from modelpool.config import ModelSpec
from modelpool.core.effects import AsyncEffects
from modelpool.core.estimates import EstimateStore
from modelpool.core.events import EventKind, PoolEvent
from modelpool.core.lease import Lease, Waiter
from modelpool.core.ports import Handle, Placement

GB = 10**9


@dataclass
class RecordingReports:
    """A stand-in for the scheduler: what each report said, and an event per report."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def _note(self, *call: Any) -> None:
        self.calls.append(call)
        self.arrived.set()

    def on_load_done(
        self, model_id: str, handle: Handle | None, error: str | None, seconds: float
    ) -> None:
        self._note("load", model_id, handle, error)

    def on_unload_done(self, model_id: str, error: str | None = None) -> None:
        self._note("unload", model_id, error)

    def on_offload_done(
        self, model_id: str, warm: Handle | None, error: str | None, seconds: float
    ) -> None:
        self._note("offload", model_id, warm, error)

    def on_lost(self, model_id: str, handle: Handle, reason: str) -> None:
        self._note("lost", model_id, reason)

    async def next(self) -> tuple[Any, ...]:
        async with asyncio.timeout(5):
            await self.arrived.wait()
        self.arrived.clear()
        return self.calls[-1]


class Rig:
    def __init__(self, *specs: ModelSpec, **options: Any) -> None:
        self.specs = {spec.id: spec for spec in specs}
        self.backend = FakeBackend()
        self.reports = RecordingReports()
        self.events: list[PoolEvent] = []
        self.released: list[Lease] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.effects = AsyncEffects(
            {"fake": self.backend},
            self.specs.__getitem__,
            spawn=self.spawn,
            publish=self.events.append,
            release=self.released.append,
            clock=asyncio.get_running_loop().time,
            **options,
        )
        self.effects.report_to(self.reports)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.append(task)
        return task

    async def loaded(self, model_id: str, device: str = "cpu") -> Handle:
        self.effects.start_load(self.specs[model_id], Placement.one(device))
        call = await self.reports.next()
        assert call[:2] == ("load", model_id)
        handle: Handle = call[2]
        return handle


def fake(model_id: str, **options: Any) -> ModelSpec:
    return ModelSpec(id=model_id, backend="fake", memory=GB, device="cpu", options=options)


async def test_a_load_reports_its_handle_and_remembers_a_measured_footprint(tmp_path: Path) -> None:
    store = EstimateStore(tmp_path / "estimates.json")
    rig = Rig(fake("a", footprint="1.5GB"), estimates=store)
    handle = await rig.loaded("a")
    assert handle.footprint == 1_500_000_000
    assert store.get(rig.specs["a"]) == 1_500_000_000


async def test_a_failed_load_reports_the_reason_not_a_traceback() -> None:
    rig = Rig(fake("a", fail_loads=1, fail_message="weights are gone"))
    rig.effects.start_load(rig.specs["a"], Placement.one("cpu"))
    call = await rig.reports.next()
    assert call == ("load", "a", None, "RuntimeError: weights are gone")


async def test_a_model_that_dies_on_its_own_is_reported_lost() -> None:
    rig = Rig(fake("a"))
    await rig.loaded("a")
    rig.backend.crash("a", "exited with code 9")
    assert await rig.reports.next() == ("lost", "a", "exited with code 9")


async def test_an_unload_on_purpose_is_not_reported_lost() -> None:
    rig = Rig(fake("a"))
    handle = await rig.loaded("a")
    rig.effects.start_unload(handle)
    assert await rig.reports.next() == ("unload", "a", None)
    rig.backend.crash("a")  # the watcher was cancelled: nothing more is reported
    await asyncio.gather(*rig.tasks, return_exceptions=True)
    assert [call[0] for call in rig.reports.calls] == ["load", "unload"]


async def test_an_unload_the_probe_never_confirms_is_reported_as_drift() -> None:
    probe = StaticProbe({"cuda:0": 8 * GB}, {"cuda:0": 2 * GB})  # never changes
    rig = Rig(fake("a"), probe=probe, confirms_release=lambda d: True, release_timeout=0.05)
    handle = await rig.loaded("a", "cuda:0")
    rig.effects.start_unload(handle, booked=GB)
    assert await rig.reports.next() == ("unload", "a", None)
    [drift] = [e for e in rig.events if e.kind == EventKind.MEMORY_DRIFT]
    assert "not seen coming back" in drift.detail["reason"]


async def test_an_unload_with_nothing_booked_does_not_wait_for_the_probe() -> None:
    probe = StaticProbe({"cuda:0": 8 * GB}, {"cuda:0": 2 * GB})
    rig = Rig(fake("a"), probe=probe, confirms_release=lambda d: True, release_timeout=30)
    handle = await rig.loaded("a", "cuda:0")
    rig.effects.start_unload(handle, booked=0)
    assert await rig.reports.next() == ("unload", "a", None)  # within next()'s 5 s, not 30
    assert rig.events == []


async def test_the_warm_tier_round_trip_reports_each_step() -> None:
    rig = Rig(fake("a"))
    handle = await rig.loaded("a")
    rig.effects.start_offload(handle)
    kind, model_id, warm, error = await rig.reports.next()
    assert (kind, model_id, warm.device, error) == ("offload", "a", "host", None)
    rig.effects.start_restore(warm, "cpu")
    kind, model_id, restored, error = await rig.reports.next()
    assert (kind, model_id, restored.device, error) == ("load", "a", "cpu", None)


async def test_a_warm_copy_that_dies_is_reported_lost_with_its_warm_handle() -> None:
    # A sleeping server process is still watched: its death is news for the scheduler.
    rig = Rig(fake("a"))
    handle = await rig.loaded("a")
    rig.effects.start_offload(handle)
    _, _, warm, _ = await rig.reports.next()
    assert warm.device == "host"
    rig.backend.crash("a", "exited while asleep")
    assert await rig.reports.next() == ("lost", "a", "exited while asleep")


async def test_a_warm_copy_being_restored_is_no_longer_watched() -> None:
    rig = Rig(fake("a", restore_seconds=0.05))
    handle = await rig.loaded("a")
    rig.effects.start_offload(handle)
    _, _, warm, _ = await rig.reports.next()
    rig.effects.start_restore(warm, "cpu")
    rig.backend.crash("a")  # the restore reports how it went, not the old watch
    kind, _, restored, error = await rig.reports.next()
    assert (kind, restored.device, error) == ("load", "cpu", None)
    assert [call[0] for call in rig.reports.calls] == ["load", "offload", "load"]


async def test_a_lease_granted_after_its_caller_left_goes_back() -> None:
    rig = Rig(fake("a"))
    handle = await rig.loaded("a")
    future: asyncio.Future[Lease | None] = asyncio.get_running_loop().create_future()
    future.cancel()
    lease = Lease(1, "a", None, 5, "cpu", handle, 0.0, hit=False)
    rig.effects.grant(Waiter(1, "a", None, 5, 0.0, future), lease)
    await asyncio.sleep(0)  # the release is scheduled, not made inside the grant
    assert rig.released == [lease]


def test_reports_must_be_attached_before_use() -> None:
    effects = AsyncEffects({}, lambda m: fake(m), spawn=None, publish=print, release=print,  # type: ignore[arg-type]
                           clock=lambda: 0.0)  # fmt: skip
    with pytest.raises(RuntimeError, match="report_to"):
        _ = effects.reports
