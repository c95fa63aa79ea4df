"""Count caps: at most ``max_models`` models loaded at once, in the pool and per device.

Memory is not the only limit people set: Ollama's ``OLLAMA_MAX_LOADED_MODELS`` and seed
004's ``DynamicModelLoader(max_models=...)`` cap how many models are loaded at once
(each one costs a process, threads, a CUDA context). ``within_caps`` extends a memory
plan with the idle models whose leaving brings every count under its cap, chosen in
the policy's order as memory victims are, so one policy decides both. Pure: no I/O,
no logging, nothing mutated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelpool.core.planner import Go, Impossible, Wait
from modelpool.core.ports import EvictionContext, EvictionPolicy
from modelpool.core.record import ModelRecord
from modelpool.core.states import ModelState
from modelpool.errors import Holder, ModelLimitReached


@dataclass(frozen=True, slots=True)
class Cap:
    """One count limit and the models that count against it now."""

    where: str
    """``the pool`` or a device, for messages."""
    limit: int
    loaded: Sequence[ModelRecord]
    """Models LOADING or READY under this cap (UNLOADING ones are already leaving)."""


def counts_toward(record: ModelRecord) -> bool:
    """Loading or loaded here: a remote model (its server is someone else's) never counts."""
    if record.spec.remote:
        return False
    return record.state is ModelState.LOADING or record.state is ModelState.READY


def within_caps(
    target: ModelRecord,
    plan: Go,
    caps: Sequence[Cap],
    policy: EvictionPolicy,
    now: float,
    demand: Mapping[str, float],
) -> Go | Wait | Impossible:
    """``plan`` (memory is fine) with more victims if a cap needs them; a ``Wait`` when
    the models over a cap will let go later (leases, loads), an ``Impossible`` when they
    never will (pinned)."""
    if target.spec.remote:  # counts toward no cap
        return plan
    victims = list(plan.victims)
    leaving = {r.model_id for r in victims}
    for cap in caps:
        staying = [r for r in cap.loaded if r.model_id not in leaving and r is not target]
        excess = len(staying) + 1 - cap.limit
        if excess <= 0:
            continue
        idle = [r for r in staying if _idle(r)]
        picked = _in_policy_order(idle, policy, now, demand)[:excess]
        if len(picked) < excess:
            rest = [r for r in staying if r not in picked]
            why = f"counts toward max_models of {cap.where} ({cap.limit})"
            holders = [Holder(r.model_id, r.estimate, _why(r, why)) for r in rest]
            if all(r.pinned and r.state is ModelState.READY for r in rest):
                return Impossible(ModelLimitReached(target.model_id, cap.where, cap.limit, holders))
            drainable = [r for r in rest if r.state is ModelState.READY and r.leases]
            return Wait(plan.device, holders, drainable, target.estimate)
        victims.extend(picked)
        leaving.update(r.model_id for r in picked)
    return plan if len(victims) == len(plan.victims) else Go(plan.device, victims, plan.spans)


def _idle(record: ModelRecord) -> bool:
    return record.state is ModelState.READY and not record.leases and not record.pinned


def _in_policy_order(
    idle: Sequence[ModelRecord], policy: EvictionPolicy, now: float, demand: Mapping[str, float]
) -> list[ModelRecord]:
    if not idle:
        return []
    candidates = [r.candidate() for r in idle]
    # Asking for more bytes than they all hold makes the policy rank every one of them.
    context = EvictionContext(need=sum(c.bytes for c in candidates) + 1, now=now, demand=demand)
    by_id = {r.model_id: r for r in idle}
    return [by_id[i] for i in dict.fromkeys(policy.victims(candidates, context)) if i in by_id]


def _why(record: ModelRecord, cap: str) -> str:
    if record.pinned and record.state is ModelState.READY:
        return f"pinned; {cap}"
    if record.leases:
        return f"in use by {', '.join(record.task_ids)}; {cap}"
    return f"{record.state}; {cap}"
