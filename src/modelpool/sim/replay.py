"""Replaying the pool's own recent traffic, once per candidate strategy.

``PoolPicture`` is what a replay needs from a live pool, copied on the pool's loop (so
the replay, on another thread, touches nothing the pool owns): each model's footprint,
device and measured costs, the budgets, the warm budget and the scheduler's settings.
``replay_table`` turns the traffic window into a ``Workload`` and the picture into a
``ModelSet`` and runs the pool's scheduler once per candidate (``sim/engine.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelpool.config import PoolSettings
from modelpool.config.schema import REMOTE
from modelpool.core.traffic_window import Arrival
from modelpool.plugins import POLICIES
from modelpool.sim.auto_choice import CandidateRow
from modelpool.sim.engine import Simulation
from modelpool.sim.models import DISK_BYTES_PER_S, PROCESS_START_S, ModelSet, SimModel
from modelpool.sim.workload import Request, Workload
from modelpool.types import Bytes, DeviceId

UNLOAD_SECONDS = 0.5
"""An unload's cost when nothing better is known (the pool does not time unloads)."""


@dataclass(frozen=True)
class PoolPicture:
    """The pool as a replay sees it: its models with measured costs, and its limits."""

    models: tuple[SimModel, ...]
    budgets: Mapping[DeviceId, Bytes]
    warm_budget: Bytes
    settings: PoolSettings

    def model_set(self) -> ModelSet:
        return ModelSet("pool", self.models, dict(self.budgets), self.warm_budget)


def picture_of(status: Mapping[str, Any], settings: PoolSettings) -> PoolPicture:
    """A picture from ``ModelPool.get_resource_status()`` and the pool's settings.

    Costs are the measured means: a model never loaded is priced as a llama.cpp-like
    start plus its size read from an NVMe disk (``sim/models.py``); a model is given a
    warm tier only if the pool has offloaded or restored it (so it can), its restore
    priced at its measured mean, else as its offload. Remote models are left out.
    """
    models = []
    for model_id, info in status["model_resources"].items():
        if info["backend"] == REMOTE:
            continue  # books nothing: no policy ever moves it, so it has no say in a choice
        size = int(info["memory_bytes"])
        loads = int(info["load_count"])
        load = (
            info["load_seconds_total"] / loads
            if loads
            else PROCESS_START_S + size / DISK_BYTES_PER_S
        )
        restores = int(info["restore_count"])
        restore: float | None = None
        if restores:
            restore = info["restore_seconds_total"] / restores
        elif int(info["offload_count"]):
            restore = load / 4  # offloaded but never back yet: a host copy beats a disk read
        models.append(
            SimModel(
                id=model_id,
                bytes=size,
                load_seconds=float(load),
                restore_seconds=restore,
                unload_seconds=UNLOAD_SECONDS,
                device=info["device"] or _first_device(status),
                tags=tuple(info["tags"]),
                priority=int(info["priority"]),
            )
        )
    budgets = {device: int(m["budget"]) for device, m in status["memory_info"].items()}
    return PoolPicture(tuple(models), budgets, settings.warm_budget, settings)


def _first_device(status: Mapping[str, Any]) -> DeviceId:
    """Where a model not resident now is replayed: the only device, or the first (a guess
    for ``device: auto`` models on several devices)."""
    devices = list(status["memory_info"])
    return devices[0] if devices else "cpu"


def workload_of(arrivals: Sequence[Arrival], known: Iterable[str]) -> Workload:
    """The window as a workload starting at 0; requests for models the pool no longer
    has are left out. Each request's service is the time its lease was held."""
    ids = set(known)
    kept = [a for a in arrivals if a.model_id in ids]
    start = kept[0].at if kept else 0.0
    requests = tuple(Request(a.at - start, a.model_id, service=a.held) for a in kept)
    return Workload("window", requests, "the pool's recent traffic")


def replay_table(
    arrivals: Sequence[Arrival],
    picture: PoolPicture,
    candidates: Sequence[str],
    current: str,
    slo: float = 5.0,
) -> list[CandidateRow]:
    """Each candidate's (and ``current``'s) cost on the window, best first; empty when
    there is nothing to choose between (no requests, or fewer than two models)."""
    models = picture.model_set()
    workload = workload_of(arrivals, models.ids)
    if len(models.ids) < 2 or len(set(workload.models())) < 2:
        return []
    names = list(dict.fromkeys([current, *(candidates or POLICIES.names())]))
    rows = []
    for name in names:
        result = Simulation(
            workload,
            models,
            POLICIES.get(name)(),
            budgets=picture.budgets,
            warm_budget=picture.warm_budget,
            slo=slo,
            settings=picture.settings,
        ).run()
        rows.append(CandidateRow.of(result))
    return sorted(rows, key=lambda r: (r.total_wait, r.strategy))
