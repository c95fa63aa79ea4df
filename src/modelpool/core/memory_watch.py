"""Memory evidence: what the probe says, set against what the ledger planned.

The ledger is the plan; the probe is evidence. Three uses of it:

* measuring a server process's footprint after it loads (its process tree's memory);
* confirming, after an unload, that the memory really came back before the ledger
  hands it out again (bounded by a timeout: a driver that is slow to report must not
  block the pool);
* reconciling every tick: memory held by *other* processes shrinks the usable budget
  (``usable = min(budget, total − headroom − others)``, the VRAM monitor's
  ``safe_max``), and a change in that outside use beyond a threshold since the pool
  started is reported as drift (a leak, an under-estimated model, a neighbour).

The decision part (``assess``) is a pure function; the async helpers only read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from modelpool.core.ledger import DeviceAccount
from modelpool.core.ports import Clock, MeasuresProcesses, MemoryProbe, MemoryReading
from modelpool.types import Bytes, DeviceId

RELEASE_POLL_SECONDS = 0.05
RELEASED_SHARE = 0.5
"""An unload counts as confirmed once this share of the model's bytes is seen free:
allocators keep a little, and other work on the device moves the figure too."""
BUDGET_STEP = 64 * 1024 * 1024
"""Usable budgets move in steps of this many bytes, so that probe noise does not
change the plan (or flood the event stream) every tick."""


def measure_processes(probe: MemoryProbe, device: DeviceId, pids: Sequence[int]) -> Bytes | None:
    """Bytes held on ``device`` by ``pids`` and their children, if the probe can tell."""
    if not isinstance(probe, MeasuresProcesses):
        return None
    return probe.process_bytes(device, pids)


def measure_processes_across(
    probe: MemoryProbe, devices: Sequence[DeviceId], pids: Sequence[int]
) -> Bytes | None:
    """Bytes ``pids`` and their children hold on all of ``devices`` together (a model
    that spans several); None if any one is unknown: a part left out would book the
    model as smaller than it is."""
    total = 0
    for device in devices:
        held = measure_processes(probe, device, pids)
        if held is None:
            return None
        total += held
    return total


def total_across(probe: MemoryProbe, devices: Sequence[DeviceId]) -> Bytes | None:
    """What ``devices`` hold together, as the probe reads them; None if any is unknown."""
    total = 0
    for device in devices:
        reading = probe.read(device)
        if reading is None:
            return None
        total += reading.total
    return total


Sleep = Callable[[float], Awaitable[None]]


async def confirm_release(
    probe: MemoryProbe,
    device: DeviceId,
    used_before: Bytes,
    size: Bytes,
    timeout: float,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> float | None:
    """Wait until the probe shows ``size`` bytes (mostly) back on ``device``.

    Returns the seconds it took, or None if the timeout passed first. Freed GPU memory
    shows up late, and no event says when: the probe is polled (``clock`` and ``sleep``
    are the pool's, a manual pair in tests).
    """
    return await confirm_release_across(
        probe, (device,), used_before, size, timeout, clock=clock, sleep=sleep
    )


def used_across(probe: MemoryProbe, devices: Sequence[DeviceId]) -> Bytes | None:
    """What ``devices`` have in use together, as the probe reads them; None if any is
    unknown."""
    used = 0
    for device in devices:
        reading = probe.read(device)
        if reading is None:
            return None
        used += reading.used
    return used


async def confirm_release_across(
    probe: MemoryProbe,
    devices: Sequence[DeviceId],
    used_before: Bytes,
    size: Bytes,
    timeout: float,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> float | None:
    """``confirm_release`` over a model that spans ``devices``: ``size`` (its bytes on
    all of them) is looked for in what they use together, ``used_before`` likewise;
    its parts need not leave each device in the booked proportions."""
    started = clock()
    target = used_before - int(size * RELEASED_SHARE)
    while True:
        used = used_across(probe, devices)
        waited = clock() - started
        if used is None or used <= target:
            return waited
        if waited >= timeout:
            return None
        await sleep(RELEASE_POLL_SECONDS)


@dataclass(frozen=True, slots=True)
class Assessment:
    usable: Bytes
    """The budget the ledger should plan with now."""
    others: Bytes
    """Bytes the probe sees used that the ledger does not account for."""
    drift: Bytes
    """``others`` now minus ``others`` when the pool started (signed)."""


def assess(
    reading: MemoryReading,
    ours: Bytes,
    others_at_start: Bytes,
    budget: Bytes,
    headroom: Bytes,
) -> Assessment:
    """Set one device's reading against the ledger. ``ours`` is what the ledger holds
    (committed, plus loads under way); ``budget`` is the configured one."""
    others = max(0, reading.used - ours)
    room = reading.total - headroom - others
    usable = max(0, min(budget, room))
    if usable < budget:
        usable -= usable % BUDGET_STEP  # round down: never plan on noise
    return Assessment(usable, others, others - others_at_start)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one reading calls for: a new usable budget and/or a drift report."""

    budget: Bytes | None
    drift: Bytes | None
    ours: Bytes
    others: Bytes


class MemoryWatch:
    """Remembers, per device, what others used when the pool started and whether a
    drift was already reported, so that one excursion is one event."""

    def __init__(
        self, budgets: Mapping[DeviceId, Bytes], headroom: Bytes, drift_threshold: Bytes
    ) -> None:
        self._configured = {device: int(size) for device, size in budgets.items()}
        self._headroom = headroom
        self._threshold = drift_threshold
        self._others_at_start: dict[DeviceId, Bytes] = {}
        self._drifting: set[DeviceId] = set()

    def observe(self, reading: MemoryReading, account: DeviceAccount) -> Verdict:
        device = reading.device
        ours = account.committed_total + account.started_total
        first = device not in self._others_at_start
        baseline = self._others_at_start.setdefault(device, max(0, reading.used - ours))
        configured = self._configured[device]
        check = assess(reading, ours, baseline, configured, self._headroom)
        change = check.usable - account.budget
        # Move the budget on a real change only: probe noise must not replan every tick.
        moves = change != 0 and (
            first or check.usable == configured or abs(change) >= 2 * BUDGET_STEP
        )
        drift: Bytes | None = None
        if abs(check.drift) > self._threshold and device not in self._drifting:
            self._drifting.add(device)
            drift = check.drift
        elif abs(check.drift) <= self._threshold // 2:
            self._drifting.discard(device)
        return Verdict(check.usable if moves else None, drift, ours, check.others)
