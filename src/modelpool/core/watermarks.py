"""Watermarks: unload idle models ahead of need, so a cold request does not wait.

Seed 000's ``auto_switch_threshold = 0.8``: once a device's booked memory passes
``high_watermark`` of its budget, idle models leave (in the policy's order, to the warm
tier where there is one) until it is back at ``low_watermark``. The next cold load then
finds its room free instead of waiting for evictions. Leased, pinned and wanted models
stay. Pure: the scheduler's tick carries the answer out.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelpool.core.ledger import DeviceAccount
from modelpool.core.ports import EvictionContext, EvictionPolicy
from modelpool.core.record import ModelRecord
from modelpool.core.states import ModelState
from modelpool.types import ModelId


def above_high_watermark(
    account: DeviceAccount,
    residents: Mapping[ModelId, ModelRecord],
    policy: EvictionPolicy,
    now: float,
    demand: Mapping[str, float],
    high: float,
    low: float,
) -> list[ModelRecord]:
    """The idle models to unload from ``account``'s device now (none below ``high``)."""
    booked = account.budget - account.planned_free
    if booked <= high * account.budget:
        return []
    need = booked - int(low * account.budget)
    idle = [
        r
        for r in residents.values()
        if r.state is ModelState.READY
        and not r.leases
        and not r.pinned
        and not r.waiters
        and not r.spec.remote  # books nothing: its leaving frees nothing
    ]
    if not idle:
        return []
    by_id = {r.model_id: r for r in idle}
    context = EvictionContext(need=need, now=now, demand=demand)
    chosen = dict.fromkeys(policy.victims([r.candidate() for r in idle], context))
    return [by_id[model_id] for model_id in chosen if model_id in by_id]
