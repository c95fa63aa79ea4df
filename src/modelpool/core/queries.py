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
    """Seed 000's status: loaded models, allocations, memory per device, per-model stats."""
    memory = scheduler.ledger.snapshot()
    for device, info in memory.items():
        info["models"] = {}  # stacked by model below: the bytes each has booked here
        reading = probe.read(device) if probe is not None else None
        if reading is not None:
            info["observed_total"], info["observed_used"] = reading.total, reading.used
    allocations: dict[str, list[ModelId]] = {}
    models: dict[ModelId, dict[str, Any]] = {}
    for record in scheduler.records():
        for lease in record.leases.values():
            key = lease.task_id or f"lease-{lease.lease_id}"
            allocations.setdefault(key, []).append(record.model_id)
        booked = 0
        parts = {d: booked_bytes(scheduler.ledger.account(d), record) for d in record.devices}
        for device, part in parts.items():
            memory[device]["models"][record.model_id] = part
        if parts:
            booked = sum(parts.values())
        elif record.warm is not None:
            booked = scheduler.warm.size_of(record)
        models[record.model_id] = {
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
    warm = scheduler.warm.ledger.snapshot()[HOST]
    warm["models"] = warm_bytes_by_model(scheduler.warm.ledger.account(HOST))
    return {
        "clock": now,
        "strategy": scheduler.policy.name,
        "loaded_models": [r.model_id for r in scheduler.records() if r.state is ModelState.READY],
        "active_allocations": allocations,
        "memory_info": memory,
        "warm_memory": warm,
        "model_resources": models,
        "queue": {"waiting": scheduler.waiting, "max": scheduler.settings.max_queue},
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
