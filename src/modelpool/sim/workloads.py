"""Synthetic workloads, each a seeded rule that stresses a pool in one distinct way.

* ``zipf_drift``: skewed popularity whose favourites change now and then (LRU/LFU land).
* ``bursty``: each model comes and goes in bursts; idle models are worth evicting.
* ``phases``: the work moves from task to task (code, chat, image, speech), so the
  resident set must turn over whole, with a trickle of embeddings throughout.
* ``diurnal``: a day's load curve, interactive models by day and batch ones by night.
* ``fragmentation``: small models always, large ones in turns, on a box of several
  devices: packing the small ones leaves holes the large ones fit.

Each generator takes ``(models, *, requests, duration, seed, **knobs)`` and gives
exactly ``requests`` requests in ``[0, duration)``, the same ones for the same seed
(one ``random.Random(seed)``, never the global one). Arrivals are a Poisson process
conditioned on its count: the times are drawn independently from the rate curve and
sorted, so a rate given as a shape needs no separate total.

Tokens: a request to an LLM has a log-normal prompt (median 500) and output (median
150); embedding, image and speech models generate nothing (``output_tokens=0``), their
time per request being fixed by the model set. ``service`` is left None throughout.

``make_workload`` turns a name (``WORKLOADS``, ``csv`` or a ``.csv`` path) into one.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelpool.sim.models import ModelSet, SimModel
from modelpool.sim.traces import azure_trace, load_csv, zipf_weights
from modelpool.sim.workload import Request, Workload

__all__ = [
    "zipf_drift",
    "bursty",
    "phases",
    "diurnal",
    "azure",
    "fragmentation",
    "WORKLOADS",
    "make_workload",
]

REQUESTS = 3600
"""One a second on average: a busy single-GPU box for an hour."""
DURATION = 3600.0

# Log-normal token counts: (median, sigma, lowest, highest).
LLM_PROMPT = (500.0, 1.0, 8, 16384)
LLM_OUTPUT = (150.0, 0.9, 1, 4096)
EMBEDDING_INPUT = (300.0, 0.8, 1, 8192)
IMAGE_PROMPT = (60.0, 0.5, 1, 300)


def zipf_drift(
    models: ModelSet,
    *,
    requests: int = REQUESTS,
    duration: float = DURATION,
    seed: int = 0,
    exponent: float = 1.1,
    drift_every: float = 600.0,
) -> Workload:
    """Zipf popularity over all models, re-ranked every ``drift_every`` seconds.

    Uniform (Poisson) arrivals. Each request picks its model from weights 1 / rank**
    ``exponent`` over a ranking that starts as a random order and, at each multiple of
    ``drift_every``, becomes a fresh random order with a different model on top.
    """
    _check(models, requests, duration)
    if drift_every <= 0:
        raise ValueError(f"zipf_drift: drift_every must be > 0 seconds, not {drift_every}")
    rng = random.Random(seed)
    weights = zipf_weights(len(models.models), exponent)
    ranking = list(models.models)
    rng.shuffle(ranking)
    epoch = 0
    out = []
    for time in _uniform_times(rng, requests, duration):
        while time >= (epoch + 1) * drift_every:
            ranking = _rerank(rng, ranking)
            epoch += 1
        out.append(_request(rng, time, rng.choices(ranking, weights)[0]))
    knobs = {"exponent": exponent, "drift_every": drift_every}
    return _workload("zipf", out, seed, duration, knobs, "Zipf popularity with drift")


def bursty(
    models: ModelSet,
    *,
    requests: int = REQUESTS,
    duration: float = DURATION,
    seed: int = 0,
    mean_on: float = 180.0,
    mean_off: float = 540.0,
) -> Workload:
    """Each model alternates ON periods (busy) and OFF periods (silent), independently.

    Period lengths are exponential (means ``mean_on`` and ``mean_off`` seconds); a model
    starts ON with the long-run ON share, mean_on / (mean_on + mean_off). All ON models
    get the same rate, set so the total is ``requests``: a request falls in an ON period
    with chance proportional to its length, at a uniform time within it. If no model is
    ever ON (only for a duration short against ``mean_off``), one model drawn at random
    is ON throughout.
    """
    _check(models, requests, duration)
    if mean_on <= 0 or mean_off <= 0:
        raise ValueError(f"bursty: mean_on and mean_off must be > 0, not {mean_on}, {mean_off}")
    rng = random.Random(seed)
    on_share = mean_on / (mean_on + mean_off)
    periods: list[tuple[float, float, SimModel]] = []
    for model in models.models:
        on, start = rng.random() < on_share, 0.0
        while start < duration:
            end = start + rng.expovariate(1.0 / (mean_on if on else mean_off))
            if on:
                periods.append((start, min(end, duration), model))
            on, start = not on, end
    if not periods:
        periods.append((0.0, duration, rng.choice(models.models)))
    picks = rng.choices(periods, [end - start for start, end, _ in periods], k=requests)
    timed = sorted(((rng.uniform(start, end), m) for start, end, m in picks), key=lambda x: x[0])
    out = [_request(rng, time, model) for time, model in timed]
    knobs = {"mean_on": mean_on, "mean_off": mean_off}
    return _workload("bursty", out, seed, duration, knobs, "on/off bursts per model")


def phases(
    models: ModelSet,
    *,
    requests: int = REQUESTS,
    duration: float = DURATION,
    seed: int = 0,
    phase_seconds: float = 300.0,
    tags: tuple[str, ...] = ("code", "chat", "image", "speech"),
    focus: float = 0.95,
    trickle_tag: str = "embedding",
    trickle: float = 0.05,
) -> Workload:
    """Task phases of ``phase_seconds`` each, cycling through ``tags`` in order.

    Uniform (Poisson) arrivals. A tag no model has is skipped. Each request goes, with
    chance ``trickle``, to a model tagged ``trickle_tag`` (if any); otherwise, with
    chance ``focus``, to a model with the phase's tag, else to one without it (if any).
    Within a group the model is drawn uniformly.
    """
    _check(models, requests, duration)
    cycle = [tag for tag in tags if models.with_tags(tag)]
    if not cycle:
        raise ValueError(f"phases: no model of {models.name!r} has any of the tags {tags}")
    if phase_seconds <= 0:
        raise ValueError(f"phases: phase_seconds must be > 0, not {phase_seconds}")
    trickling = models.with_tags(trickle_tag)
    rng = random.Random(seed)
    out = []
    for time in _uniform_times(rng, requests, duration):
        tag = cycle[int(time // phase_seconds) % len(cycle)]
        focused = models.with_tags(tag)
        others = [m for m in models.models if tag not in m.tags]
        if trickling and rng.random() < trickle:
            group = trickling
        elif not others or rng.random() < focus:
            group = focused
        else:
            group = others
        out.append(_request(rng, time, rng.choice(group)))
    knobs = dict(phase_seconds=phase_seconds, tags=cycle, focus=focus, trickle=trickle)
    knobs["trickle_tag"] = trickle_tag
    return _workload("phases", out, seed, duration, knobs, f"task phases: {' → '.join(cycle)}")


def diurnal(
    models: ModelSet,
    *,
    requests: int = REQUESTS,
    duration: float = DURATION,
    seed: int = 0,
    peak_to_trough: float = 4.0,
    day_tags: tuple[str, ...] = ("chat", "code"),
    night_tags: tuple[str, ...] = ("embedding", "image"),
    other_share: float = 0.05,
) -> Workload:
    """One day compressed into ``duration``: midnight at both ends, noon in the middle.

    The arrival rate is proportional to 1 − a·cos(2πt / duration), with a chosen so the
    noon peak is ``peak_to_trough`` times the midnight rate. A request goes, with chance
    ``other_share``, to a model in neither group (if any); otherwise to a day model
    (any of ``day_tags``) with chance equal to the daylight (1 − cos(2πt / duration)) / 2,
    else to a night model (any of ``night_tags``, not already a day one). An empty group
    gives its share to the other. Within a group the model is drawn uniformly.
    """
    _check(models, requests, duration)
    if peak_to_trough < 1:
        raise ValueError(f"diurnal: peak_to_trough must be >= 1, not {peak_to_trough}")
    day = [m for m in models.models if set(m.tags) & set(day_tags)]
    night = [m for m in models.models if set(m.tags) & set(night_tags) and m not in day]
    other = [m for m in models.models if m not in day and m not in night]
    if not day and not night:
        raise ValueError(f"diurnal: no model of {models.name!r} has a day or a night tag")
    rng = random.Random(seed)
    swing = (peak_to_trough - 1) / (peak_to_trough + 1)

    def daylight(time: float) -> float:
        return (1 - math.cos(2 * math.pi * time / duration)) / 2

    def rate(time: float) -> float:  # 1 − a·cos, scaled so the peak is 1
        return (1 - swing + 2 * swing * daylight(time)) / (1 + swing)

    out = []
    for time in _thinned_times(rng, requests, duration, rate):
        if other and rng.random() < other_share:
            group = other
        elif day and (not night or rng.random() < daylight(time)):
            group = day
        else:
            group = night
        out.append(_request(rng, time, rng.choice(group)))
    knobs = dict(
        peak_to_trough=peak_to_trough,
        day_tags=list(day_tags),
        night_tags=list(night_tags),
        other_share=other_share,
    )
    return _workload("diurnal", out, seed, duration, knobs, "a day's load curve and mix")


AZURE_ONE_BOX: dict[str, Any] = {"sample": 0.125, "sessions": 8}
"""The whole trace is a production service's traffic; one GPU box sees a share of it."""


def azure(
    models: ModelSet,
    *,
    requests: int | None = None,
    duration: float | None = None,
    seed: int = 0,
    path: str | Path | None = None,
    **knobs: Any,
) -> Workload:
    """``traces.azure_trace`` in the generators' calling convention: ``requests`` keeps
    the first ones, ``duration`` those that arrive before it (None: the whole trace).

    Sized for one box: one request in eight (``AZURE_ONE_BOX``: about 2,400 over the
    hour, 0.7 a second) among 8 open conversations; ``knobs`` override either."""
    knobs = AZURE_ONE_BOX | knobs
    workload = azure_trace(models, path, seed=seed, **knobs)
    return _cut(workload, requests, duration)


def fragmentation(
    models: ModelSet,
    *,
    requests: int = REQUESTS,
    duration: float = DURATION,
    seed: int = 0,
    small_share: float = 0.7,
    small_below: float = 8e9,
    turn_every: float = 300.0,
    large_at_once: int = 3,
) -> Workload:
    """Many small models always in use, large ones in turns: where the small ones sit
    decides whether a large one finds a hole (for a box of several devices).

    Uniform arrivals; ``small_share`` of them pick a model smaller than ``small_below``
    bytes at random; the rest go to the ``large_at_once`` large models whose turn it is
    (of those on one device: models spread over several get no requests here), the
    turn moving on every ``turn_every`` seconds.
    """
    _check(models, requests, duration)
    small = [m for m in models.models if m.bytes < small_below]
    # Holes are per device: the large models are those that need one of their own.
    large = [m for m in models.models if m.bytes >= small_below and m.devices is None]
    if not small or not large:
        raise ValueError(
            f"fragmentation: the set {models.name!r} needs models both below and above "
            f"{small_below / 1e9:g} GB"
        )
    rng = random.Random(seed)
    order = list(large)
    rng.shuffle(order)
    out = []
    for time in _uniform_times(rng, requests, duration):
        if rng.random() < small_share:
            model = rng.choice(small)
        else:
            turn = int(time // turn_every) * large_at_once
            model = order[(turn + rng.randrange(large_at_once)) % len(order)]
        out.append(_request(rng, time, model))
    knobs = {"small_share": small_share, "small_below": small_below,
             "turn_every": turn_every, "large_at_once": large_at_once}  # fmt: skip
    return _workload(
        "fragmentation", out, seed, duration, knobs, "Small models always, large in turns"
    )


WORKLOADS: dict[str, Callable[..., Workload]] = {
    "fragmentation": fragmentation,
    "zipf": zipf_drift,
    "bursty": bursty,
    "phases": phases,
    "diurnal": diurnal,
    "azure": azure,
}


def make_workload(
    name: str,
    models: ModelSet,
    *,
    seed: int = 0,
    requests: int | None = None,
    duration: float | None = None,
    trace: str | Path | None = None,
) -> Workload:
    """The workload a name asks for: a key of ``WORKLOADS`` (``trace`` is the azure
    file), ``csv`` with ``trace`` given, or a path ending ``.csv``.

    ``requests`` and ``duration`` None mean the generator's defaults; for a CSV they keep
    the first requests and those before ``duration``. A CSV that names a model the set
    lacks is refused here, where the set is known, before anything runs.
    """
    sizes: dict[str, Any] = {"requests": requests} if requests is not None else {}
    if duration is not None:
        sizes["duration"] = duration
    if name in WORKLOADS:
        if trace is not None and name != "azure":
            raise ValueError(f"workload {name!r} is synthetic: a trace file goes with azure or csv")
        if trace is not None:
            sizes["path"] = trace
        return WORKLOADS[name](models, seed=seed, **sizes)
    if name == "csv" and trace is None:
        raise ValueError("workload 'csv' needs a file: give --trace FILE")
    if name == "csv" or name.lower().endswith(".csv"):
        if trace is not None and name != "csv":
            raise ValueError(f"workload {name!r} is a file already: give no --trace with it")
        path = Path(trace if trace is not None else name)
        workload = _cut(load_csv(path), requests, duration)
        unknown = sorted(set(workload.models()) - set(models.ids))
        if unknown:
            raise ValueError(
                f"{path}: models not in the set {models.name!r}: {', '.join(unknown)}; "
                f"the set has: {', '.join(models.ids)}"
            )
        return workload
    raise ValueError(
        f"unknown workload {name!r}: give one of {', '.join(WORKLOADS)}, "
        "csv with --trace FILE, or a path ending .csv"
    )


# --- shared rules ----------------------------------------------------------------------


def _check(models: ModelSet, requests: int, duration: float) -> None:
    if not models.models:
        raise ValueError(f"model set {models.name!r} is empty")
    if requests < 1 or duration <= 0:
        raise ValueError(f"need requests >= 1 and duration > 0, not {requests}, {duration}")


def _uniform_times(rng: random.Random, n: int, duration: float) -> list[float]:
    """A homogeneous Poisson process on [0, duration) given that it has n arrivals."""
    return sorted(rng.random() * duration for _ in range(n))


def _thinned_times(
    rng: random.Random, n: int, duration: float, rate: Callable[[float], float]
) -> list[float]:
    """n arrivals of a Poisson process whose rate is ``rate(t)`` (at most 1), by
    rejection: a uniform time is kept with chance rate(t)."""
    times: list[float] = []
    while len(times) < n:
        time = rng.random() * duration
        if rng.random() < rate(time):
            times.append(time)
    return sorted(times)


def _rerank(rng: random.Random, ranking: list[SimModel]) -> list[SimModel]:
    """A fresh random order with a different model on top (when there are two or more)."""
    new = list(ranking)
    rng.shuffle(new)
    if len(new) > 1 and new[0] is ranking[0]:
        swap = rng.randrange(1, len(new))
        new[0], new[swap] = new[swap], new[0]
    return new


def _lognormal(rng: random.Random, shape: tuple[float, float, int, int]) -> int:
    median, sigma, lowest, highest = shape
    return max(lowest, min(highest, round(rng.lognormvariate(math.log(median), sigma))))


def _request(rng: random.Random, time: float, model: SimModel) -> Request:
    """A request to ``model`` with token counts that suit what kind of model it is."""
    if "embedding" in model.tags:
        return Request(time, model.id, _lognormal(rng, EMBEDDING_INPUT), 0)
    if "image" in model.tags:
        return Request(time, model.id, _lognormal(rng, IMAGE_PROMPT), 0)
    if "speech" in model.tags:
        return Request(time, model.id, 0, 0)
    return Request(time, model.id, _lognormal(rng, LLM_PROMPT), _lognormal(rng, LLM_OUTPUT))


def _workload(
    name: str, requests: list[Request], seed: int, duration: float, knobs: dict[str, Any], what: str
) -> Workload:
    size = {"requests": len(requests), "duration": duration}
    return Workload(
        name=name,
        requests=tuple(requests),
        description=f"{what}: {len(requests)} requests over {duration:g} s, seed {seed}",
        params={"generator": name, "seed": seed, **size, **knobs},
    )


def _cut(workload: Workload, requests: int | None, duration: float | None) -> Workload:
    """The first ``requests`` requests, of those arriving before ``duration``."""
    kept = [r for r in workload.requests if duration is None or r.time < duration][:requests]
    if not kept:
        raise ValueError(f"workload {workload.name!r}: no request arrives before {duration} s")
    params = {**workload.params, "requests": len(kept)}
    if duration is not None:
        params["duration"] = duration
    return dataclasses.replace(workload, requests=tuple(kept), params=params)
