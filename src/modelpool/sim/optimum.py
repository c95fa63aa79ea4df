"""The exact offline optimum of load cost, by dynamic programming over resident sets.

The problem: serve the requests in arrival order; a request for a model that is not
resident loads it (paying its load seconds), after evicting any set of resident models
that makes room. Minimise the seconds paid. Two facts keep the search small:

* Evicting later is never worse than evicting earlier (eviction is free, only loads
  cost), so on a miss only *maximal* kept sets matter: those to which no other resident
  model could be added without overflowing the device.
* Each device is its own problem when every model names its device.

The state is the set of resident models (a bit mask); the cost of a step depends only
on the request, so the table holds one best cost per reachable set, and a back-pointer
per step recovers which requests missed. With a warm tier, a model that can be
offloaded comes back by a restore, priced as if host RAM always had room for it: a
relaxation, so the result stays a lower bound. The sequence model ignores requests
that queue behind a load, so its waits are each miss's load seconds: compare its load
seconds with a strategy's, its waits only as a floor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from modelpool.core.stats import percentile
from modelpool.sim.models import ModelSet
from modelpool.sim.results import RunResult
from modelpool.sim.workload import Workload
from modelpool.types import Bytes, DeviceId

OPTIMUM_LABEL = "optimum (exact, in order)"
MAX_MODELS_PER_DEVICE = 16
MAX_STATES = 5_000


class OptimumTooLarge(ValueError):
    """The instance is too large for the exact search (the reason says why)."""


def exact_optimum(
    workload: Workload,
    models: ModelSet,
    *,
    budgets: Mapping[DeviceId, Bytes] | None = None,
    warm_budget: Bytes | None = None,
    slo: float = 5.0,
    max_states: int = MAX_STATES,
) -> RunResult:
    started = time.perf_counter()
    budgets = dict(models.budgets if budgets is None else budgets)
    warm = models.warm_budget if warm_budget is None else warm_budget
    auto = [m.id for m in models.models if m.device not in budgets]
    if auto:
        raise OptimumTooLarge(
            f"models {', '.join(auto)} have no budget of their own device "
            "(device auto or unbudgeted): the exact search needs one device per model"
        )
    requests = workload.requests
    costs: list[float] = []  # what a miss of request i costs
    restores: list[bool] = []
    seen: set[str] = set()
    for request in requests:
        model = models[request.model]
        restore_seconds = model.restore_seconds
        restore = request.model in seen and restore_seconds is not None and model.bytes <= warm
        restores.append(restore)
        costs.append(restore_seconds if restore and restore_seconds is not None
                     else model.load_seconds)  # fmt: skip
        seen.add(request.model)

    missed = [False] * len(requests)
    rejected = [False] * len(requests)
    evictions = 0
    for device, budget in budgets.items():
        on_device = [m for m in models.models if m.device == device]
        indexes = [i for i, r in enumerate(requests) if models[r.model].device == device]
        if not on_device or not indexes:
            continue
        misses, too_big, evicted = _one_device(
            [requests[i].model for i in indexes],
            [costs[i] for i in indexes],
            {m.id: m.bytes for m in on_device},
            budget,
            max_states,
            device,
        )
        evictions += evicted
        for at in misses:
            missed[indexes[at]] = True
        for at in too_big:
            rejected[indexes[at]] = True

    waits = sorted(costs[i] if missed[i] else 0.0 for i in range(len(requests)) if not rejected[i])
    miss_ids = [i for i in range(len(requests)) if missed[i]]
    warm_loads = sum(1 for i in miss_ids if restores[i])
    moved = sum(models[requests[i].model].bytes * (2 if restores[i] else 1) for i in miss_ids)
    return RunResult(
        label=OPTIMUM_LABEL,
        requests=len(requests),
        served=len(waits),
        rejected=sum(rejected),
        hits=len(waits) - len(miss_ids),
        cold_loads=len(miss_ids) - warm_loads,
        warm_restores=warm_loads,
        offloads=warm_loads,
        unloads=evictions,
        total_wait=math.fsum(waits),
        p95_wait=percentile(waits, 95),
        max_wait=waits[-1] if waits else 0.0,
        over_slo=sum(1 for w in waits if w > slo),
        slo=slo,
        bytes_moved=moved,
        load_seconds=math.fsum(costs[i] for i in miss_ids),
        simulated_seconds=workload.duration,
        wall_seconds=time.perf_counter() - started,
        exact=True,
    )


def _one_device(
    wanted: list[str],
    costs: list[float],
    sizes: Mapping[str, Bytes],
    budget: Bytes,
    max_states: int,
    device: DeviceId,
) -> tuple[list[int], list[int], int]:
    """(steps that missed, steps that can never fit, evictions) on one device's optimum."""
    if len(sizes) > MAX_MODELS_PER_DEVICE:
        raise OptimumTooLarge(
            f"{len(sizes)} models on {device}: the exact search stops at {MAX_MODELS_PER_DEVICE}"
        )
    ids = list(sizes)
    bit = {model_id: 1 << n for n, model_id in enumerate(ids)}
    size_of_bit = [sizes[model_id] for model_id in ids]

    def size(mask: int) -> Bytes:
        return sum(size_of_bit[n] for n in range(len(ids)) if mask >> n & 1)

    kept_sets: dict[tuple[int, int], list[int]] = {}

    def maximal_kept(mask: int, room: Bytes) -> list[int]:
        """Subsets of ``mask`` that fit in ``room``, none of which could keep one more."""
        key = (mask, room)
        if key not in kept_sets:
            members = [1 << n for n in range(len(ids)) if mask >> n & 1]
            fitting = []
            sub = mask
            while True:  # every submask of ``mask``, largest first
                if size(sub) <= room and all(sub & b or size(sub | b) > room for b in members):
                    fitting.append(sub)
                if sub == 0:
                    break
                sub = (sub - 1) & mask
            kept_sets[key] = fitting
        return kept_sets[key]

    best: dict[int, float] = {0: 0.0}
    parents: list[dict[int, int]] = []
    too_big: set[int] = set()
    for step, (model_id, cost) in enumerate(zip(wanted, costs, strict=True)):
        b = bit[model_id]
        room = budget - sizes[model_id]
        if room < 0:
            too_big.add(step)
            parents.append({mask: mask for mask in best})
            continue
        after: dict[int, float] = {}
        parent: dict[int, int] = {}
        for mask, paid in best.items():
            if mask & b:
                if paid < after.get(mask, math.inf):
                    after[mask], parent[mask] = paid, mask
                continue
            total = paid + cost
            for kept in maximal_kept(mask, room):
                new = kept | b
                if total < after.get(new, math.inf):
                    after[new], parent[new] = total, mask
        if len(after) > max_states:
            raise OptimumTooLarge(
                f"more than {max_states} reachable resident sets on {device} "
                f"(at request {step + 1})"
            )
        best = after
        parents.append(parent)

    # Walk back from the cheapest final set to find which steps missed.
    mask = min(best, key=lambda m: best[m])
    misses: list[int] = []
    evictions = 0
    for step in range(len(wanted) - 1, -1, -1):
        previous = parents[step][mask]
        if not previous & bit[wanted[step]] and step not in too_big:
            misses.append(step)
            evictions += bin(previous & ~mask).count("1")
        mask = previous
    misses.reverse()
    return misses, sorted(too_big), evictions
