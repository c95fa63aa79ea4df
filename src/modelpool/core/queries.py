"""Read-only questions about the pool: could it fit, is this much free, the status report.

Plain functions of the scheduler's state; they change nothing.
"""

from __future__ import annotations

from typing import Any

from modelpool.core.ledger import DeviceAccount
from modelpool.core.planner import Go, booked_bytes, holder
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
    plan = scheduler.plan(record, now)
    return isinstance(plan, Go) and (allow_eviction or not plan.victims)


def require_free(scheduler: Scheduler, device: DeviceId, need: Bytes, purpose: str) -> None:
    """Raise ``InsufficientMemory`` naming what holds ``device`` unless ``need`` is free."""
    account = scheduler.ledger.account(device)
    if account.fits_now(need):
        return
    holders = [holder(account, r) for r in scheduler.residents(device).values()]
    raise InsufficientMemory(purpose, device, need, max(0, account.planned_free), holders)


def resource_status(scheduler: Scheduler, probe: MemoryProbe | None, now: float) -> dict[str, Any]:
    """Seed 000's status: loaded models, allocations, memory per device, per-model stats.
    A model with replicas is one entry (its copies summed, each under ``replicas``);
    memory per device is stacked by record (each copy, ``chat#2``, holds its own)."""
    memory = scheduler.ledger.snapshot()
    for device, info in memory.items():
        info["models"] = {}  # stacked by model below: the bytes each has booked here
        reading = probe.read(device) if probe is not None else None
        if reading is not None:
            info["observed_total"], info["observed_used"] = reading.total, reading.used
    allocations: dict[str, list[ModelId]] = {}
    views: dict[ModelId, dict[str, Any]] = {}
    for record in scheduler.records():
        model_id = scheduler.model_id_of(record.model_id)
        for lease in record.leases.values():
            key = lease.task_id or f"lease-{lease.lease_id}"
            allocations.setdefault(key, []).append(model_id)
        view = views[record.model_id] = _record_view(scheduler, record, now)
        for device, part in view["devices"].items():
            memory[device]["models"][record.model_id] = part
    models = {
        model_id: views[model_id]
        if model_id in views
        else _replicas_view(scheduler, model_id, views, now)
        for model_id in scheduler.models()
    }
    warm = scheduler.warm.ledger.snapshot()[HOST]
    warm["models"] = warm_bytes_by_model(scheduler.warm.ledger.account(HOST))
    return {
        "clock": now,
        "strategy": scheduler.policy.name,
        "loaded_models": [m for m, view in models.items() if view["status"] == "ready"],
        "active_allocations": allocations,
        "memory_info": memory,
        "warm_memory": warm,
        "model_resources": models,
        "queue": {"waiting": scheduler.waiting, "max": scheduler.settings.max_queue},
    }


def _record_view(scheduler: Scheduler, record: ModelRecord, now: float) -> dict[str, Any]:
    parts = {d: booked_bytes(scheduler.ledger.account(d), record) for d in record.devices}
    booked = sum(parts.values())
    if not parts and record.warm is not None:
        booked = scheduler.warm.size_of(record)
    return {
        "status": str(record.state),
        "device": record.device,
        "devices": parts,
        "memory_bytes": booked or record.estimate,
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


def _replicas_view(
    scheduler: Scheduler, model_id: ModelId, views: dict[ModelId, dict[str, Any]], now: float
) -> dict[str, Any]:
    """A model served by copies: its state is its most available copy's, its memory,
    leases, waiters and stats the sums of theirs; ``replicas`` has each copy's view."""
    copies = scheduler.copies(model_id)
    spec = scheduler.model_spec(model_id)
    settings = spec.replicas
    assert settings is not None
    replicas = [{"id": c.model_id, **views[c.model_id]} for c in copies]
    holding = [c for c in copies if c.device is not None or c.warm is not None]
    devices: dict[DeviceId, Bytes] = {}
    for copy in replicas:
        for device, part in copy["devices"].items():
            devices[device] = devices.get(device, 0) + part
    errors = [c.last_error for c in copies if c.last_error]
    return {
        "status": str(scheduler.model_state(model_id)),
        "device": next((c.device for c in copies if c.device is not None), None),
        "devices": devices,
        "memory_bytes": sum(views[c.model_id]["memory_bytes"] for c in holding)
        or copies[0].estimate,
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


def warm_bytes_by_model(account: DeviceAccount) -> dict[ModelId, Bytes]:
    """What each model holds in the warm tier (host RAM), as ``memory_info[d]["models"]``
    says for a device: kept there (leaving included) or reserved for an offload."""
    return {**account.reserved, **account.committed}


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
