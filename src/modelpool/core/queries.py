"""Read-only questions about the pool: could it fit, is this much free, the status report.

Plain functions of the scheduler's state; they change nothing.
"""

from __future__ import annotations

from typing import Any

from modelpool.core.planner import Go, booked_bytes, holder, plan_load
from modelpool.core.ports import HOST, MemoryProbe
from modelpool.core.record import ModelRecord
from modelpool.core.scheduler import Scheduler
from modelpool.core.states import RESIDENT, ModelState
from modelpool.core.stats import combined_snapshot
from modelpool.errors import InsufficientMemory
from modelpool.types import Bytes, DeviceId, ModelId
from modelpool.units import format_size


def can_fit(scheduler: Scheduler, model: str, now: float, *, allow_eviction: bool) -> bool:
    """Whether ``model`` could load now: in free memory, or (if allowed) by evicting."""
    record = scheduler.resolve(model)
    if record.state in RESIDENT:
        return True
    for device in scheduler.devices_for(record):
        account = scheduler.ledger.account(device)
        if account.fits_now(record.estimate):
            return True
        if allow_eviction and account.fits_ever(record.estimate):
            residents = scheduler.residents(device)
            demand = scheduler.demand()
            plan = plan_load(record, account, residents, scheduler.policy, now, demand)
            if isinstance(plan, Go):
                return True
    return False


def require_free(scheduler: Scheduler, device: DeviceId, need: Bytes, purpose: str) -> None:
    """Raise ``InsufficientMemory`` naming what holds ``device`` unless ``need`` is free."""
    account = scheduler.ledger.account(device)
    if account.fits_now(need):
        return
    holders = [holder(account, r) for r in scheduler.residents(device).values()]
    raise InsufficientMemory(purpose, device, need, max(0, account.planned_free), holders)


def resource_status(scheduler: Scheduler, probe: MemoryProbe | None, now: float) -> dict[str, Any]:
    """Seed 000's status: loaded models, allocations, memory per device, per-model stats."""
    memory = scheduler.ledger.snapshot()
    for device, info in memory.items():
        reading = probe.read(device) if probe is not None else None
        if reading is not None:
            info["observed_total"], info["observed_used"] = reading.total, reading.used
    allocations: dict[str, list[ModelId]] = {}
    models: dict[ModelId, dict[str, Any]] = {}
    for record in scheduler.records():
        model_id = scheduler.model_id_of(record.model_id)
        for lease in record.leases.values():
            key = lease.task_id or f"lease-{lease.lease_id}"
            allocations.setdefault(key, []).append(model_id)
        if model_id == record.model_id:
            models[model_id] = _record_view(scheduler, record, now)
    for model_id in scheduler.models():
        if model_id not in models:  # served by copies: their sum, and each
            models[model_id] = _replicas_view(scheduler, model_id, now)
    return {
        "clock": now,
        "strategy": scheduler.policy.name,
        "loaded_models": [m for m, view in models.items() if view["status"] == "ready"],
        "active_allocations": allocations,
        "memory_info": memory,
        "warm_memory": scheduler.warm.ledger.snapshot()[HOST],
        "model_resources": {m: models[m] for m in scheduler.models()},
        "queue": {"waiting": scheduler.waiting, "max": scheduler.settings.max_queue},
    }


def _booked(scheduler: Scheduler, record: ModelRecord) -> int:
    """Bytes ``record`` holds on its device or in the warm tier (0: none)."""
    if record.device is not None:
        return booked_bytes(scheduler.ledger.account(record.device), record)
    if record.warm is not None:
        return scheduler.warm.size_of(record)
    return 0


def _record_view(scheduler: Scheduler, record: ModelRecord, now: float) -> dict[str, Any]:
    return {
        "status": str(record.state),
        "device": record.device,
        "memory_bytes": _booked(scheduler, record) or record.estimate,
        "backend": record.spec.backend,
        "pinned": record.pinned,
        "draining": record.draining,
        "group": record.spec.group,
        "tags": list(record.spec.tags),
        "priority": record.spec.priority,
        "ttl": record.spec.ttl,
        "leases": len(record.leases),
        "waiting": len(record.waiters),
        "last_error": record.last_error,
        **record.stats.snapshot(now),
    }


def _replicas_view(scheduler: Scheduler, model_id: ModelId, now: float) -> dict[str, Any]:
    """A model served by copies: its state is its most available copy's, its memory,
    leases, waiters and stats the sums of theirs; ``replicas`` has each copy's view."""
    copies = scheduler.copies(model_id)
    spec = scheduler.model_spec(model_id)
    held = sum(_booked(scheduler, c) for c in copies)
    holding = [c for c in copies if c.device is not None]
    errors = [c.last_error for c in copies if c.last_error]
    replicas = [{"id": c.model_id, **_record_view(scheduler, c, now)} for c in copies]
    settings = spec.replicas
    assert settings is not None
    return {
        "status": str(scheduler.model_state(model_id)),
        "device": next((c.device for c in copies if c.device is not None), None),
        "memory_bytes": held or copies[0].estimate,
        "backend": spec.backend,
        "pinned": any(c.pinned for c in copies),
        "draining": bool(holding) and all(c.draining for c in holding),
        "group": spec.group,
        "tags": list(spec.tags),
        "priority": spec.priority,
        "ttl": copies[0].spec.ttl,
        "leases": sum(len(c.leases) for c in copies),
        "waiting": sum(len(c.waiters) for c in copies),
        "last_error": errors[-1] if errors else None,
        **combined_snapshot([c.stats for c in copies], now),
        "replicas": replicas,
        "replicas_active": sum(c.state in (ModelState.LOADING, ModelState.READY) for c in copies),
        "replicas_min": settings.min,
        "replicas_max": settings.max,
    }


def fit_problems(scheduler: Scheduler, models: list[str]) -> list[str]:
    """Why ``models`` could not all be resident at once (empty if they could): together
    they must fit one device's budget beside every pinned model not among them."""
    problems: list[str] = []
    placed: dict[DeviceId, list[ModelRecord]] = {}
    for record in (scheduler.resolve(model) for model in models):
        devices = [record.device] if record.device else scheduler.devices_for(record)
        fitting = [d for d in devices if scheduler.ledger.account(d).fits_ever(record.estimate)]
        if not fitting:
            where = ", ".join(devices) or "no device"
            problems.append(
                f"{record.model_id} needs {format_size(record.estimate)}, more than the "
                f"whole budget of {where}"
            )
            continue
        placed.setdefault(fitting[0], []).append(record)
    for device, group in placed.items():
        account = scheduler.ledger.account(device)
        pinned = [r for r in scheduler.residents(device).values() if r.pinned and r not in group]
        need = sum(r.estimate for r in group) + sum(booked_bytes(account, r) for r in pinned)
        if len(group) > 1 and not account.fits_ever(need):
            names = " and ".join(r.model_id for r in group)
            beside = f" beside pinned {', '.join(r.model_id for r in pinned)}" if pinned else ""
            problems.append(
                f"{names} need {format_size(need)} together on {device}{beside}; its budget "
                f"is {format_size(account.budget)}"
            )
    return problems
